"""`conveyor demo`: a sample app and a local fleet, deployed, promoted, rolled back, in seconds."""
