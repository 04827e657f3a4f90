"""How tensors are computed on this machine, for the vision tower and the language model alike: which
dtype to compute in (`dtypes`), linears on oneDNN-prepacked weights (`prepack`) and one-row products
spread over the threads (`gemv`). Imports nothing from the packages above it (vision/, video/,
mm_model/)."""
