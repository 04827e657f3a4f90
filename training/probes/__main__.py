"""`python -m training.probes PROBE [flags]`: the shared runner (`training.probes.run`)."""

from training.probes.run import main

if __name__ == "__main__":
    main()
