# layers.sh — sourced by tools/sanitize.sh and tools/fuzz.sh: the folders a
# source file may include from, as -iquote flags. The same table as
# build.zig's (quote(...) per folder; spec/architecture.md "Layers"):
#   base → formats → vm, infer → compiler → cli; tests see all but cli.
# A header is found only in its own folder and the layers below, so an
# include that points up a layer fails to build here as it does in zig build.
# The library's folders, lowest first:
layer_dirs=(base formats vm infer compiler)

# layer_quotes SOURCE: prints the -iquote flags for that file.
layer_quotes() {
    local dirs
    case $1 in
    base/*)     dirs="base" ;;
    formats/*)  dirs="base formats" ;;
    vm/*)       dirs="base formats vm" ;;
    infer/*)    dirs="base formats infer" ;;
    compiler/*|*stdlib_embed.c) dirs="base formats vm infer compiler" ;;
    cli/*)      dirs="base formats vm infer compiler cli" ;;
    *)          dirs="base formats vm infer compiler tests" ;;
    esac
    local d
    for d in $dirs; do printf -- '-iquote %s ' "$d"; done
}
