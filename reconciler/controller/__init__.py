"""The controller shape (controller-runtime's): sources only enqueue keys, a keyed queue
dedupes them, workers handle one key at a time, backoff spaces out failures. Used by watch
mode and by the control plane's runtime controller. Imports only `docker` and `naming`."""
