"""Development tools, not installed with korpair: the sample-corpus generator and doc helpers."""
