# ollama: built in a later change.
die "feature ollama has no built-in script yet; give one in features/ollama/"
