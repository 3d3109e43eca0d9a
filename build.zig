//! crucible's one build: the library, the binary, tests, the demo and the
//! sanitiser builds. Sources are found by walking the source folders, so a
//! new .c file needs no edit here.
//!
//!   zig build                       release binary in zig-out/bin/crucible
//!   zig build test                  unit tests, example recipes, end-to-end
//!   zig build demo                  synthesise tiny models and merge them
//!   zig build test -Dsanitize=address,undefined
//!                                   the same tests built by the system clang
//!                                   with sanitisers (Zig ships no ASan/TSan
//!                                   runtime), see tools/sanitize.sh
const std = @import("std");

const base_flags = [_][]const u8{
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-D_GNU_SOURCE",
    // FMA contraction would change the last bit of merges and break parity
    // with torch and between ISA levels.
    "-ffp-contract=off",
    "-fno-strict-aliasing",
};

/// Every `*.c` under `dir` (recursively), relative to the build root, sorted.
/// Zig 0.17 caches the configure phase; each walked folder is registered so
/// that adding or removing a file re-runs it.
fn cSources(b: *std.Build, dir: []const u8, prefix: ?[]const u8) []const []const u8 {
    const io = b.graph.io;
    var list: std.ArrayList([]const u8) = .empty;
    var d = b.root.root_dir.handle.openDir(io, dir, .{ .iterate = true }) catch return &.{};
    b.dependOnDirectoryContents(b.path(dir));
    defer d.close(io);
    var walker = d.walk(b.allocator) catch @panic("out of memory");
    defer walker.deinit();
    while (walker.next(io) catch null) |entry| {
        if (entry.kind == .directory) {
            b.dependOnDirectoryContents(b.path(b.pathJoin(&.{ dir, entry.path })));
            continue;
        }
        if (entry.kind != .file) continue;
        if (!std.mem.endsWith(u8, entry.path, ".c")) continue;
        if (prefix) |p| if (!std.mem.startsWith(u8, entry.basename, p)) continue;
        list.append(b.allocator, b.pathJoin(&.{ dir, entry.path })) catch @panic("out of memory");
    }
    std.mem.sort([]const u8, list.items, {}, struct {
        fn lt(_: void, a: []const u8, c: []const u8) bool {
            return std.mem.lessThan(u8, a, c);
        }
    }.lt);
    return list.items;
}

fn linkDeps(m: *std.Build.Module) void {
    m.linkSystemLibrary("yaml", .{});
    m.linkSystemLibrary("lua5.4", .{});
    m.linkSystemLibrary("cjson", .{});
    m.linkSystemLibrary("m", .{});
    m.linkSystemLibrary("pthread", .{});
}

/// The layers (spec/architecture.md), lowest first: each folder's sources
/// see only their own folder's headers and those of the layers below, so an
/// include that points up a layer fails to build. Our headers are found with
/// quoted includes only (-iquote, no -I), so a project header can never
/// shadow a system one (core/limits.h vs <limits.h>) and no path-qualified
/// include ("vm/program.h") can step around the layers.
///   core → formats → vm, infer → compiler → cli; tests see all but cli.
/// tools/layers.sh holds the same table for the clang builds (sanitize.sh,
/// fuzz.sh); tests/e2e/layers.sh checks that the two agree.
fn quote(comptime dirs: []const []const u8) [2 * dirs.len][]const u8 {
    var out: [2 * dirs.len][]const u8 = undefined;
    for (dirs, 0..) |d, i| {
        out[2 * i] = "-iquote";
        out[2 * i + 1] = d;
    }
    return out;
}
const core_c = base_flags ++ quote(&.{"core"});
const formats_c = base_flags ++ quote(&.{ "core", "formats" });
const vm_c = base_flags ++ quote(&.{ "core", "formats", "vm" });
const infer_c = base_flags ++ quote(&.{ "core", "formats", "infer" });
const compiler_c = base_flags ++ quote(&.{ "core", "formats", "vm", "infer", "compiler" });
const cli_c = base_flags ++ quote(&.{ "core", "formats", "vm", "infer", "compiler", "cli" });
const tests_c = base_flags ++ quote(&.{ "core", "formats", "vm", "infer", "compiler", "tests" });

/// The library's folders, each with its flags.
const lib_layers = [_]struct { dir: []const u8, flags: []const []const u8 }{
    .{ .dir = "core", .flags = &core_c },
    .{ .dir = "formats", .flags = &formats_c },
    .{ .dir = "vm", .flags = &vm_c },
    .{ .dir = "infer", .flags = &infer_c },
    .{ .dir = "compiler", .flags = &compiler_c },
};

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.option(std.lang.Optimize, "optimize", "optimisation (default ReleaseFast)") orelse .fast;
    const sanitize = b.option([]const u8, "sanitize", "address,undefined | thread: build tests with the system clang and these sanitisers");

    // stdlib/*.lua embedded into the binary: a tiny C tool writes a .c file.
    const embed_mod = b.createModule(.{ .target = b.graph.host, .optimize = .safe, .link_libc = true });
    embed_mod.addCSourceFiles(.{ .files = &.{"tools/embed.c"}, .flags = &base_flags });
    const embed = b.addExecutable(.{ .name = "embed", .root_module = embed_mod });
    const run_embed = b.addRunArtifact(embed);
    const embedded_c = run_embed.addOutputFileArg("stdlib_embed.c");
    for (cSourcesLua(b)) |lua| run_embed.addFileArg(b.path(lua));

    // libcrucible: everything but the command line.
    const lib_mod = b.createModule(.{ .target = target, .optimize = optimize, .link_libc = true });
    for (lib_layers) |l| lib_mod.addCSourceFiles(.{ .files = cSources(b, l.dir, null), .flags = l.flags });
    lib_mod.addCSourceFile(.{ .file = embedded_c, .flags = &compiler_c });
    linkDeps(lib_mod);
    const lib = b.addLibrary(.{ .name = "crucible", .root_module = lib_mod, .linkage = .static });
    b.installArtifact(lib);

    const exe_mod = b.createModule(.{ .target = target, .optimize = optimize, .link_libc = true });
    exe_mod.addCSourceFiles(.{ .files = cSources(b, "cli", null), .flags = &cli_c });
    exe_mod.linkLibrary(lib);
    linkDeps(exe_mod);
    const exe = b.addExecutable(.{ .name = "crucible", .root_module = exe_mod });
    b.installArtifact(exe);

    // Unit tests: one binary per tests/unit/test_*.c, with tests/support/*.c.
    const test_step = b.step("test", "run the unit, example and end-to-end tests");
    const demo_step = b.step("demo", "synthesise tiny models and merge them (examples/demo)");

    if (sanitize) |which| {
        const san = b.addSystemCommand(&.{ "bash", "tools/sanitize.sh", which });
        san.setCwd(b.path("."));
        san.addFileArg(embedded_c);
        san.stdio = .inherit;
        test_step.dependOn(&san.step);
        return;
    }

    // tests/run.sh CRUCIBLE TEST_BIN...: runs each, then tests/e2e/*.sh.
    const run_tests = b.addSystemCommand(&.{ "bash", "tests/run.sh" });
    run_tests.setCwd(b.path("."));
    run_tests.addArtifactArg(exe);
    for (cSources(b, "tests/unit", "test_")) |src| {
        const name = std.fs.path.stem(src);
        const t_mod = b.createModule(.{ .target = target, .optimize = .debug, .link_libc = true });
        t_mod.addCSourceFiles(.{ .files = &.{src}, .flags = &tests_c });
        t_mod.addCSourceFiles(.{ .files = cSources(b, "tests/support", null), .flags = &tests_c });
        t_mod.linkLibrary(lib);
        linkDeps(t_mod);
        const t = b.addExecutable(.{ .name = name, .root_module = t_mod });
        run_tests.addArtifactArg(t);
    }
    run_tests.stdio = .inherit;
    run_tests.has_side_effects = true;
    test_step.dependOn(&run_tests.step);

    const run_demo = b.addSystemCommand(&.{ "bash", "examples/demo/run.sh" });
    run_demo.setCwd(b.path("."));
    run_demo.addArtifactArg(exe);
    run_demo.stdio = .inherit;
    run_demo.has_side_effects = true;
    demo_step.dependOn(&run_demo.step);
    // The README's quick start ends here and names zig-out/bin/crucible.
    demo_step.dependOn(b.getInstallStep());
}

/// stdlib/*.lua, sorted (the embedded table is in this order).
fn cSourcesLua(b: *std.Build) []const []const u8 {
    const io = b.graph.io;
    var list: std.ArrayList([]const u8) = .empty;
    var d = b.root.root_dir.handle.openDir(io, "stdlib", .{ .iterate = true }) catch return &.{};
    defer d.close(io);
    b.dependOnDirectoryContents(b.path("stdlib"));
    var it = d.iterate();
    while (it.next(io) catch null) |entry| {
        if (entry.kind != .file or !std.mem.endsWith(u8, entry.name, ".lua")) continue;
        list.append(b.allocator, b.pathJoin(&.{ "stdlib", b.dupe(entry.name) })) catch @panic("out of memory");
    }
    std.mem.sort([]const u8, list.items, {}, struct {
        fn lt(_: void, a: []const u8, c: []const u8) bool {
            return std.mem.lessThan(u8, a, c);
        }
    }.lt);
    return list.items;
}
