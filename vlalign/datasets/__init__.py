"""The data: data set formats and their readers, derived text data sets (prompts, aliases) and word properties."""
