# Shared by scripts/demo.sh and the benchmarks (source it): a throwaway HOME and a
# git repository holding examples/hello-stack.

# hello_sandbox_env WORK: point HOME and git's identity at WORK, so nothing of the
# user's is read or touched.
hello_sandbox_env() {
    export HOME="$1/home" GIT_CONFIG_GLOBAL=/dev/null
    export GIT_AUTHOR_NAME=kinfra-demo GIT_AUTHOR_EMAIL=demo@example.com
    export GIT_COMMITTER_NAME=kinfra-demo GIT_COMMITTER_EMAIL=demo@example.com
    mkdir -p "$HOME"
}

# make_hello_repo REPO_DIR DEST: a one-commit repository with the hello-stack app.
make_hello_repo() {
    local src="$1/examples/hello-stack" dest="$2"
    mkdir -p "$dest"
    cp "$src/docker-compose.yml" "$src/kinfra.toml" "$dest/"
    printf '.env.sandbox\n' >"$dest/.gitignore"
    git -C "$dest" init -q -b main
    git -C "$dest" add -A
    git -C "$dest" commit -q -m "hello-stack"
}
