# layers.sh — sourced by tools/sanitize.sh and tools/fuzz.sh: the folders a
# source file may include from, as -iquote flags. The same table as
# build.zig's (quote(...) per folder; spec/architecture.md "Folders are layers"):
#   core → formats → vm, infer → compiler → cli; tests see all but cli.
# A header is found only in its own folder and the layers below, so an
# include that points up a layer fails to build here as it does in zig build.
# The library's folders, lowest first:
layer_dirs=(core formats vm infer compiler)

# layer_quotes SOURCE: prints the -iquote flags for that file.
layer_quotes() {
    local dirs
    case $1 in
    core/*)     dirs="core" ;;
    formats/*)  dirs="core formats" ;;
    vm/*)       dirs="core formats vm" ;;
    infer/*)    dirs="core formats infer" ;;
    compiler/*|*stdlib_embed.c) dirs="core formats vm infer compiler" ;;
    cli/*)      dirs="core formats vm infer compiler cli" ;;
    *)          dirs="core formats vm infer compiler tests" ;;
    esac
    local d
    for d in $dirs; do printf -- '-iquote %s ' "$d"; done
}
