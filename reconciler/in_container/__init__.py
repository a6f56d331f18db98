"""Stdlib-only scripts that run inside agent containers (the socket relay, the gitconfig filter,
git's credential helper). They are shipped as source text, so they import nothing of clawker."""
