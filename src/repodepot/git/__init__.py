"""The only package that starts git: `runner` spawns, `commands` gives typed operations."""
