"""`conveyor demo`: a sample app and a local fleet, deployed, promoted, rolled back, in seconds.

- fleet.py: the sample app and its local fleet, written into a directory;
- run.py: the run itself, through the same operations as every command (the command line is cli/demo.py).
"""
