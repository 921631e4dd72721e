"""The embedded data sets, shipped as package data (see README.md here); build_emoji.py rebuilds them."""
