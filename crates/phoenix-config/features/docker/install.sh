# docker: built in a later change.
die "feature docker has no built-in script yet; give one in features/docker/"
