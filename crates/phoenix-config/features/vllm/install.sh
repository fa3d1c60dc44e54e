# vllm: built in a later change.
die "feature vllm has no built-in script yet; give one in features/vllm/"
