"""One run: the backend interface and its table, the runner (settings -> data -> backend -> results), reuse of
finished runs."""
