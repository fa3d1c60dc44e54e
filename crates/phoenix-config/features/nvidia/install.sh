# nvidia: built in a later change.
die "feature nvidia has no built-in script yet; give one in features/nvidia/"
