"""What each command does, one function per command; the CLI only parses, calls and renders."""
