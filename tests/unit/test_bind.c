/* test_bind.c — portable input manifests (vm/manifest.c, compiler/bind.c):
 * a model's file is saved as (model reference, path inside the model) and
 * never with the path it was bound to; a loaded program is unbound until
 * its models are resolved or overridden; the verifier refuses paths that
 * leave the model's directory; a file of another size is refused naming the
 * model and the file; `name@revision` picks the Hugging Face snapshot. */
#include "harness.h"
#include "support/vm_build.h"
#include "bind.h"
#include "layout.h"
#include "vm.h"

#include <stdlib.h>
#include <sys/stat.h>

static char *tmp;

static void write_n(const char *path, size_t n)
{
    FILE *f = fopen(path, "wb");
    for (size_t i = 0; f && i < n; i++) fputc((int)(i * 7), f);
    if (f) fclose(f);
}

static char *at(const char *name)
{
    static char buf[4][600];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp, name);
    return buf[k];
}

/* the sample: one file of no model (read at its given path) and one file
 * of model acme/m, at DIR/sub/x.safetensors on this machine */
static void build(cr_program *p, const char *dir)
{
    vm_builder b;
    vb_init(&b);
    uint32_t f = vb_file(&b, "given/in.safetensors", 8 + 64 + 400, 0);
    uint32_t in = vb_input(&b, f, CR_DTYPE_BF16, "w", 72, 400, 10, 20, 20);
    uint32_t o = vb_output(&b, "w", CR_DTYPE_BF16, 10, 20);
    vb_shard(&b, "model.safetensors");
    vb_m(&b, CR_OP_COPY, CR_DTYPE_NONE, o, in, 0, 0);
    vb_m(&b, CR_OP_DONE, CR_DTYPE_NONE, o, 0, 0, 0);
    vb_build(&b, p);
    char path[700];
    snprintf(path, sizeof path, "%s/sub/x.safetensors", dir);
    cr_input_file mf = { .ref = "acme/m@v1", .lookup = "acme/m", .revision = "abc123", .dir = dir, .path = path,
                         .size = 1000 };
    uint32_t idx = 99;
    cr_error err = { 0 };
    CHECK_MSG(cr_program_add_input_file(p, &mf, &idx, &err) == CR_OK, "%s", err.msg);
    CHECK_EQ_INT(idx, 1);
}

TEST(saved_without_machine_paths)
{
    cr_program p, q;
    build(&p, "/machine/a/models/m");
    cr_error err = { 0 };
    CHECK_STR(cr_prog_str(&p, p.files[1].path), "/machine/a/models/m/sub/x.safetensors");
    CHECK_STR(cr_prog_str(&p, p.files[1].rel), "sub/x.safetensors");
    CHECK_EQ_INT(cr_program_first_unbound(&p), UINT32_MAX);
    REQUIRE(cr_program_verify(&p, &err) == CR_OK);
    REQUIRE(cr_program_save(&p, at("a.crb"), &err) == CR_OK);
    size_t n;
    unsigned char *d = vb_read_file(at("a.crb"), &n);
    REQUIRE(d);
    CHECK(!memmem(d, n, "/machine", 8));
    CHECK(memmem(d, n, "sub/x.safetensors", 17) != NULL);
    free(d);
    CHECK_MSG(cr_program_load(cr_default_allocator(), at("a.crb"), &q, &err) == CR_OK, "%s", err.msg);
    CHECK_EQ_INT(cr_program_first_unbound(&q), 1);
    CHECK_STR(cr_prog_str(&q, q.files[0].path), "given/in.safetensors");
    CHECK_STR(cr_prog_str(&q, q.models[0].ref), "acme/m@v1");
    CHECK_STR(cr_prog_str(&q, q.models[0].lookup), "acme/m");
    CHECK_STR(cr_prog_str(&q, q.models[0].revision), "abc123");
    char l[200];
    CHECK_STR(cr_program_file_label(&q, 1, l, sizeof l), "acme/m@v1: sub/x.safetensors");
    /* the program compiled on machine b saves to the same bytes */
    cr_program r;
    build(&r, "/b/m");
    REQUIRE(cr_program_save(&r, at("b.crb"), &err) == CR_OK);
    size_t na, nb;
    unsigned char *a = vb_read_file(at("a.crb"), &na), *bb = vb_read_file(at("b.crb"), &nb);
    CHECK(a && bb && na == nb && !memcmp(a, bb, na));
    free(a);
    free(bb);
    cr_program_free(&r);
    cr_program_free(&q);
    cr_program_free(&p);
}

TEST(verifier_keeps_files_inside_models)
{
    cr_program p;
    build(&p, "/m");
    cr_error err = { 0 };
    const char *bad[] = { "../x.safetensors", "/etc/passwd", "sub/../../x", "sub/./x", "sub//x", "sub/", "" };
    cr_blob keep = p.files[1].rel;
    for (size_t i = 0; i < CR_ARRAY_LEN(bad); i++) {
        REQUIRE(cr_program_add_blob(&p, bad[i], strlen(bad[i]), &p.files[1].rel, &err) == CR_OK);
        CHECK_MSG(cr_program_verify(&p, &err) == CR_ERR_FORMAT, "accepted %s", bad[i]);
        CHECK_CONTAINS(err.msg, "acme/m@v1");
    }
    p.files[1].rel = keep;
    CHECK(cr_program_verify(&p, &err) == CR_OK);
    /* a model's file bound to a path in the saved pool, a model out of range */
    cr_blob bound = p.files[1].path;
    p.files[1].path = p.files[0].path;
    CHECK_EQ_INT(cr_program_verify(&p, &err), CR_ERR_FORMAT);
    p.files[1].path = bound;
    p.files[1].model = 1;
    CHECK_EQ_INT(cr_program_verify(&p, &err), CR_ERR_FORMAT);
    p.files[1].model = 0;
    /* a file outside its model's directory cannot be added */
    cr_input_file out = { .ref = "m", .dir = "/m", .path = "/mm/x", .size = 1 };
    uint32_t idx;
    CHECK_EQ_INT(cr_program_add_input_file(&p, &out, &idx, &err), CR_ERR_ARG);
    cr_program_free(&p);
}

TEST(binding_a_loaded_program)
{
    cr_program p, q;
    build(&p, "/m");
    cr_error err = { 0 };
    REQUIRE(cr_program_save(&p, at("c.crb"), &err) == CR_OK);
    REQUIRE(cr_program_load(cr_default_allocator(), at("c.crb"), &q, &err) == CR_OK);
    REQUIRE(mkdir(at("there"), 0755) == 0 && mkdir(at("there/sub"), 0755) == 0);
    write_n(at("there/sub/x.safetensors"), 1000);
    cr_arena ar;
    cr_arena_init(&ar, cr_default_allocator());
    cr_resolve_env env = { .recipe_dir = tmp };
    /* not found: names the model and its revision */
    CHECK_EQ_INT(cr_program_bind_models(&q, &env, &ar, NULL, 0, &err), CR_ERR_CONFIG);
    CHECK_CONTAINS(err.msg, "acme/m@v1");
    CHECK_CONTAINS(err.msg, "abc123");
    /* an override naming nothing */
    cr_bind_override typo = { "acme/n", "/" };
    CHECK_EQ_INT(cr_program_bind_models(&q, &env, &ar, &typo, 1, &err), CR_ERR_ARG);
    CHECK_CONTAINS(err.msg, "acme/n");
    /* by reference or by what is looked up */
    char *there = strdup(at("there")), *x = strdup(at("there/sub/x.safetensors")), *given = strdup(at("given.safetensors"));
    cr_bind_override ov[2] = { { "acme/m", there }, { "given/in.safetensors", x } };
    CHECK(cr_program_bind_models(&q, &env, &ar, ov, 1, &err) != CR_OK);
    CHECK_CONTAINS(err.msg, "given/in.safetensors");
    /* the file of no model is then missing: override it too (another size) */
    CHECK_EQ_INT(cr_program_bind_models(&q, &env, &ar, ov, 2, &err), CR_ERR_RUNTIME);
    CHECK_CONTAINS(err.msg, "given/in.safetensors");
    CHECK_CONTAINS(err.msg, "1000 bytes");
    write_n(given, 8 + 64 + 400);
    ov[1].path = given;
    CHECK_MSG(cr_program_bind_models(&q, &env, &ar, ov, 2, &err) == CR_OK, "%s", err.msg);
    CHECK_STR(cr_prog_str(&q, q.files[1].path), at("there/sub/x.safetensors"));
    CHECK_STR(cr_prog_str(&q, q.files[0].path), at("given.safetensors"));
    CHECK_EQ_INT(cr_program_first_unbound(&q), UINT32_MAX);
    /* another size: refused, naming the model and the file */
    write_n(at("there/sub/x.safetensors"), 999);
    CHECK_EQ_INT(cr_program_bind_models(&q, &env, &ar, ov, 2, &err), CR_ERR_RUNTIME);
    CHECK_CONTAINS(err.msg, "acme/m@v1: sub/x.safetensors");
    CHECK_CONTAINS(err.msg, "999 bytes");
    /* hashing reads the bound files */
    write_n(at("there/sub/x.safetensors"), 1000);
    REQUIRE(cr_program_bind_models(&q, &env, &ar, ov, 2, &err) == CR_OK);
    CHECK_MSG(cr_program_hash_inputs(&q, &err) == CR_OK, "%s", err.msg);
    CHECK(q.files[1].hash != 0 && !(q.flags & CR_PROG_SKIP_HASH));
    free(there);
    free(x);
    free(given);
    cr_arena_free(&ar);
    cr_program_free(&q);
    cr_program_free(&p);
}

TEST(revision_picks_the_snapshot)
{
    const char *hub = at("hub");
    char cmd[2400];
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s/models--acme--m/snapshots/aaa %s/models--acme--m/snapshots/bbb %s/models--acme--m/refs && "
             "printf bbb > %s/models--acme--m/refs/main && printf aaa > %s/models--acme--m/refs/v1",
             hub, hub, hub, hub, hub);
    REQUIRE(system(cmd) == 0);
    cr_arena ar;
    cr_arena_init(&ar, cr_default_allocator());
    cr_resolve_env env = { .recipe_dir = tmp, .hf_hub = hub };
    const char *tried, *snap;
    const char *d = cr_resolve_model_at(&env, &ar, "acme/m", NULL, &snap, &tried);
    CHECK(d && snap && !strcmp(snap, "bbb") && strstr(d, "snapshots/bbb"));
    d = cr_resolve_model_at(&env, &ar, "acme/m", "v1", &snap, &tried);
    CHECK(d && snap && !strcmp(snap, "aaa"));
    d = cr_resolve_model_at(&env, &ar, "acme/m", "aaa", &snap, &tried);
    CHECK(d && snap && !strcmp(snap, "aaa"));
    d = cr_resolve_model_at(&env, &ar, "acme/m", "ccc", &snap, &tried);
    CHECK(!d && snap == NULL && tried && strstr(tried, "at revision ccc"));
    d = cr_resolve_model_at(&env, &ar, "acme/m", "../x", &snap, &tried);
    CHECK(!d);
    cr_arena_free(&ar);
}

int main(void)
{
    tmp = vb_tempdir();
    if (!tmp) return 1;
    RUN(saved_without_machine_paths);
    RUN(verifier_keeps_files_inside_models);
    RUN(binding_a_loaded_program);
    RUN(revision_picks_the_snapshot);
    vb_rmtree(tmp);
    free(tmp);
    return cr_test_summary();
}
