"""`python -m mm_model.server`: the same as `mm-model serve`."""

from mm_model.server.run import main

raise SystemExit(main())
