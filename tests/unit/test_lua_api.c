/* test_lua_api.c — the Lua API builds the right nodes and dtypes, and the
 * sandbox holds: forbidden libraries, runaway loops and memory bombs each
 * fail with a clear message and the state keeps working. */
#include "harness.h"
#include "support/graph_fixtures.h"
#include "method.h"
#include <stdlib.h>
#include <unistd.h>

typedef struct fixture {
    cr_graph g;
    cr_lua *L;
    uint32_t d, in[4];
} fixture;

static bool setup(fixture *f, cr_dtype t)
{
    cr_graph_init(&f->g, cr_default_allocator());
    cr_lua_limits lim = { .max_bytes = (size_t)32 << 20, .max_instructions = 5000000 };
    cr_error err;
    if (cr_lua_open(cr_default_allocator(), &lim, &f->L, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return false;
    }
    f->d = cr_test_graph_inputs(&f->g, 4, 8, t, 3, f->in);
    return true;
}

static void teardown(fixture *f)
{
    cr_lua_close(f->L);
    cr_graph_free(&f->g);
}

static uint32_t run(fixture *f, const char *body, cr_error *err)
{
    return cr_test_lua_merge(f->L, &f->g, f->d, f->in, 3, true, body, false, err);
}

TEST(arithmetic_builds_nodes)
{
    fixture f;
    REQUIRE(setup(&f, CR_DTYPE_BF16));
    cr_error err = {0};
    uint32_t r = run(&f, "local a, b = ctx.inputs[1], ctx.inputs[2]\nreturn (a + b) * 2 - a / b + (-a)", &err);
    CHECK_MSG(r != CR_NO_NODE, "%s", err.msg);
    REQUIRE(r != CR_NO_NODE);
    const cr_node *n = &f.g.nodes[r];
    CHECK_EQ_INT(n->op, CR_GOP_ADD);
    CHECK_EQ_INT(n->dtype, CR_DTYPE_BF16);
    CHECK_EQ_INT(n->rdt, CR_DTYPE_BF16);
    CHECK_EQ_INT(n->kind, CR_VK_TENSOR);
    CHECK_EQ_INT(f.g.nodes[n->in[1]].op, CR_GOP_NEG);
    CHECK(cr_graph_verify(&f.g, &err) == CR_OK);
    /* every op present once */
    int seen[CR_GOP_COUNT] = {0};
    for (uint32_t i = 0; i < f.g.n_nodes; i++) seen[f.g.nodes[i].op]++;
    CHECK_EQ_INT(seen[CR_GOP_MUL], 1);
    CHECK_EQ_INT(seen[CR_GOP_DIV], 1);
    CHECK_EQ_INT(seen[CR_GOP_SUB], 1);
    teardown(&f);
}

TEST(dtype_rules)
{
    fixture f;
    REQUIRE(setup(&f, CR_DTYPE_BF16));
    cr_error err = {0};
    /* bf16 + f16 -> f32; scalar (from sum) with tensor keeps the tensor's dtype */
    uint32_t r = run(&f, "local a = ctx.inputs[1]\n"
                         "local h = ctx.inputs[2]:cast('float16')\n"
                         "local s = (a + h)\n"
                         "assert(s.dtype == 'float32', s.dtype)\n"
                         "local t = a * h:sum()\n"
                         "assert(t.dtype == 'bfloat16', t.dtype)\n"
                         "assert(h:sum().kind == 'scalar')\n"
                         "assert(a:row_sum().kind == 'rows')\n"
                         "assert((a * 0.5).dtype == 'bfloat16')\n"
                         "assert(cr.gt(a, 0).dtype == 'bool')\n"
                         "assert((cr.gt(a, 0) * a).dtype == 'bfloat16')\n"
                         "assert(cr.const(0.6, 'bfloat16').dtype == 'bfloat16')\n"
                         "assert(a:norm().dtype == 'bfloat16')\n"
                         "assert(cr.float(a:sum()).dtype == 'float64')\n"
                         "assert(a.numel == 32 and a.shape[1] == 4 and a.shape[2] == 8)\n"
                         "assert(ctx.base == ctx.inputs[1] and #ctx.others == 2)\n"
                         "assert(a.model == 'm0' and a.is_base and a.params.weight == 0.25)\n"
                         "return t", &err);
    CHECK_MSG(r != CR_NO_NODE, "%s", err.msg);
    /* the const is rounded to bf16 */
    bool found = false;
    for (uint32_t i = 0; i < f.g.n_nodes; i++)
        if (f.g.nodes[i].op == CR_GOP_CONST && f.g.nodes[i].dtype == CR_DTYPE_BF16)
            found = f.g.nodes[i].value == 0.6015625;
    CHECK(found);
    teardown(&f);
}

TEST(precise_rounds_f32)
{
    fixture f;
    REQUIRE(setup(&f, CR_DTYPE_BF16));
    cr_error err = {0};
    uint32_t r = cr_test_lua_merge(f.L, &f.g, f.d, f.in, 3, true,
                                   "return ctx.inputs[1] * ctx.inputs[2]", true, &err);
    REQUIRE(r != CR_NO_NODE);
    CHECK_EQ_INT(f.g.nodes[r].dtype, CR_DTYPE_BF16);
    CHECK_EQ_INT(f.g.nodes[r].rdt, CR_DTYPE_F32);
    teardown(&f);
}

TEST(reductions_and_selection)
{
    fixture f;
    REQUIRE(setup(&f, CR_DTYPE_F32));
    cr_error err = {0};
    uint32_t r = run(&f, "local a = ctx.inputs[1]\n"
                         "local m = cr.topk_mask(a, 5)\n"
                         "local k = cr.kth_largest_abs(a, 3)\n"
                         "local rr = cr.row_rank(a)\n"
                         "local u = cr.rand(ctx, 'dare')\n"
                         "return cr.where(cr.lt(u, 0.5), a * m + rr, a - k) / a:row_max()", &err);
    CHECK_MSG(r != CR_NO_NODE, "%s", err.msg);
    int seen[CR_GOP_COUNT] = {0};
    for (uint32_t i = 0; i < f.g.n_nodes; i++) seen[f.g.nodes[i].op]++;
    CHECK_EQ_INT(seen[CR_GOP_TOPK_MASK], 1);
    CHECK_EQ_INT(seen[CR_GOP_KTH_ABS], 1);
    CHECK_EQ_INT(seen[CR_GOP_ROW_RANK], 1);
    CHECK_EQ_INT(seen[CR_GOP_RAND], 1);
    CHECK_EQ_INT(seen[CR_GOP_ROWMAX], 1);
    CHECK_EQ_INT(seen[CR_GOP_WHERE], 1);
    CHECK(cr_graph_verify(&f.g, &err) == CR_OK);
    /* topk k must be an integer */
    CHECK(run(&f, "return cr.topk_mask(ctx.inputs[1], 1.5)", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "integer");
    teardown(&f);
}

/* cr.fma builds one FMA node of torch's result dtype (a bf16 tensor with a
 * float32 accumulator: float32); all-scalar operands are refused (the op
 * runs only in kernels), and the verifier refuses a scalar FMA node */
TEST(fma_node)
{
    fixture f;
    REQUIRE(setup(&f, CR_DTYPE_BF16));
    cr_error err = {0};
    uint32_t r = run(&f, "local x = ctx.inputs[1]\n"
                         "local w = cr.const(0.3, 'float32')\n"
                         "local acc = cr.fma(x:cast('float32'), w, 0)\n"
                         "return cr.fma(ctx.inputs[2], w, acc)", &err);
    CHECK_MSG(r != CR_NO_NODE, "%s", err.msg);
    REQUIRE(r != CR_NO_NODE);
    CHECK_EQ_INT(f.g.nodes[r].op, CR_GOP_FMA);
    CHECK_EQ_INT(f.g.nodes[r].dtype, CR_DTYPE_F32);
    CHECK_EQ_INT(f.g.nodes[r].kind, CR_VK_TENSOR);
    CHECK_EQ_INT(f.g.nodes[f.g.nodes[r].in[2]].op, CR_GOP_FMA);
    CHECK(cr_graph_verify(&f.g, &err) == CR_OK);
    /* an FMA of three scalars, built by hand, is refused */
    cr_node c = { .op = CR_GOP_CONST, .dtype = CR_DTYPE_F32, .rdt = CR_DTYPE_F32, .kind = CR_VK_SCALAR,
                  .domain = CR_NO_DOMAIN, .value = 1 };
    uint32_t k = cr_graph_add(&f.g, &c);
    cr_node m = { .op = CR_GOP_FMA, .n_in = 3, .in = { k, k, k }, .dtype = CR_DTYPE_F32, .rdt = CR_DTYPE_F32,
                  .kind = CR_VK_SCALAR, .domain = CR_NO_DOMAIN };
    cr_graph_add(&f.g, &m);
    CHECK(cr_graph_verify(&f.g, &err) != CR_OK);
    CHECK_CONTAINS(err.msg, "kernel-only");
    CHECK(run(&f, "return cr.fma(cr.const(1, 'float32'), 2, 3)", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "cr.fma needs a tensor");
    teardown(&f);
}

/* cr.tail_mask: a TAIL node over x's domain whose count is a constant;
 * the count must be a non-negative integer */
TEST(tail_mask_node)
{
    fixture f;
    REQUIRE(setup(&f, CR_DTYPE_F32));
    cr_error err = {0};
    uint32_t r = run(&f, "return cr.tail_mask(ctx.inputs[1], 5)", &err);
    CHECK_MSG(r != CR_NO_NODE, "%s", err.msg);
    REQUIRE(r != CR_NO_NODE);
    CHECK_EQ_INT(f.g.nodes[r].op, CR_GOP_TAIL);
    CHECK_EQ_INT(f.g.nodes[r].kind, CR_VK_TENSOR);
    CHECK_EQ_INT(f.g.nodes[r].domain, f.d);
    CHECK(f.g.nodes[f.g.nodes[r].in[0]].op == CR_GOP_CONST && f.g.nodes[f.g.nodes[r].in[0]].value == 5);
    CHECK(cr_graph_verify(&f.g, &err) == CR_OK);
    CHECK(run(&f, "return cr.tail_mask(ctx.inputs[1], 1.5)", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "integer");
    CHECK(run(&f, "return cr.tail_mask(ctx.inputs[1], -1)", &err) == CR_NO_NODE);
    teardown(&f);
}

/* the library-order reductions build SUM / ROWSUM nodes tagged with their
 * summation order (the emitter picks RSUM_NP, RSSQ_BLAS, RSUM_TORCH, ... by
 * it), and cse keeps differently ordered sums of one value apart */
TEST(library_order_reductions)
{
    fixture f;
    REQUIRE(setup(&f, CR_DTYPE_F32));
    cr_error err = {0};
    uint32_t r = run(&f, "local a = ctx.inputs[1]\n"
                         "local s = cr.np_sum(a) + cr.np_norm(a) + cr.torch_sum(a) + cr.torch_norm(a) + a:sum()\n"
                         "s = s + cr.torch_chunked_sum(a) + cr.torch_chunked_norm(a)\n"
                         "return a * s + cr.torch_row_sum(a) + cr.torch_row_norm(a)", &err);
    CHECK_MSG(r != CR_NO_NODE, "%s", err.msg);
    int order[7] = {0}, rows[7] = {0};
    for (uint32_t i = 0; i < f.g.n_nodes; i++) {
        const cr_node *n = &f.g.nodes[i];
        if (n->op == CR_GOP_SUM && n->attr < 7) order[n->attr]++;
        if (n->op == CR_GOP_ROWSUM && n->attr < 7) rows[n->attr]++;
    }
    CHECK_EQ_INT(order[CR_SUM_WIDE], 1);
    CHECK_EQ_INT(order[CR_SUM_NUMPY], 1);
    CHECK_EQ_INT(order[CR_SUM_BLAS_SSQ], 1);
    CHECK_EQ_INT(order[CR_SUM_TORCH], 1);
    CHECK_EQ_INT(order[CR_SUM_TORCH_SSQ], 1);
    CHECK_EQ_INT(order[CR_SUM_TORCH_CHUNKS], 1);
    CHECK_EQ_INT(order[CR_SUM_TORCH_SSQ_CHUNKS], 1);
    CHECK_EQ_INT(rows[CR_SUM_TORCH], 1);
    CHECK_EQ_INT(rows[CR_SUM_TORCH_SSQ], 1);
    CHECK(cr_graph_verify(&f.g, &err) == CR_OK);
    teardown(&f);
    /* the NumPy/torch norm emulations are float32-only */
    REQUIRE(setup(&f, CR_DTYPE_BF16));
    CHECK(run(&f, "return ctx.inputs[1] * cr.np_norm(ctx.inputs[1])", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "float32");
    CHECK(run(&f, "return ctx.inputs[1] * cr.torch_chunked_norm(ctx.inputs[1])", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "float32");
    teardown(&f);
}

TEST(errors_name_file_and_line)
{
    fixture f;
    REQUIRE(setup(&f, CR_DTYPE_F32));
    cr_error err = {0};
    CHECK(run(&f, "\ncr.error('density must be positive')", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "test.lua:3: density must be positive");
    CHECK_CONTAINS(err.msg, "t.weight");
    CHECK(run(&f, "return 42", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "not a tensor value");
    CHECK(run(&f, "return ctx.inputs[1] + {}", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "tensor value or number");
    CHECK(run(&f, "return cr.acos(ctx.inputs[1])", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "takes a scalar or a row/column vector");
    CHECK(run(&f, "return cr.trunc(ctx.inputs[1]:row_max())", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "takes a scalar, got a row vector");
    /* per-row trig: acos/sin/cos of a row vector are row vectors */
    uint32_t r = run(&f, "local a = ctx.inputs[1]\n"
                         "return a * cr.sin(cr.acos(cr.clamp(a:row_max(), -1, 1))) + cr.cos(a:row_max())", &err);
    CHECK_MSG(r != CR_NO_NODE, "%s", err.msg);
    for (uint32_t i = 0; i < f.g.n_nodes; i++)
        if (f.g.nodes[i].op == CR_GOP_ACOS || f.g.nodes[i].op == CR_GOP_SIN || f.g.nodes[i].op == CR_GOP_COS)
            CHECK_EQ_INT(f.g.nodes[i].kind, CR_VK_ROWS);
    CHECK(cr_graph_verify(&f.g, &err) == CR_OK);
    CHECK(run(&f, "return x.y", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "test.lua:2");
    teardown(&f);
}

TEST(sandbox)
{
    fixture f;
    REQUIRE(setup(&f, CR_DTYPE_F32));
    cr_error err = {0};
    CHECK(run(&f, "io.open('/etc/passwd')", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "io");
    CHECK(run(&f, "os.execute('true')", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "os");
    CHECK(run(&f, "require('os')", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "require");
    CHECK(run(&f, "dofile('/etc/passwd')", &err) == CR_NO_NODE);
    CHECK(run(&f, "collectgarbage('stop')", &err) == CR_NO_NODE);
    CHECK(run(&f, "local f = load(string.dump(function() end))", &err) == CR_NO_NODE);
    CHECK(run(&f, "local f = load('\\27Lua')\nassert(f, 'binary refused')", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "binary refused");
    CHECK(run(&f, "while true do end", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "instruction limit");
    CHECK(run(&f, "local t = {}\nfor i = 1, 1e9 do t[i] = string.rep('x', 1000) .. i end", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "memory");
    CHECK(run(&f, "local s = string.rep('x', 1 << 40)", &err) == CR_NO_NODE);
    /* text load works and stays sandboxed */
    uint32_t r = run(&f, "local g = load('return io')\nassert(g() == nil)\nreturn ctx.inputs[1]", &err);
    CHECK_MSG(r != CR_NO_NODE, "%s", err.msg);
    /* the state survives all of the above */
    r = run(&f, "return ctx.inputs[1] + ctx.inputs[2]", &err);
    CHECK_MSG(r != CR_NO_NODE, "%s", err.msg);
    teardown(&f);
}

/* Ways to outrun the instruction budget (found by fuzz_lua, see
 * spec/reliability.md): each must fail fast with a message, and ordinary
 * uses of the same functions still work. */
TEST(sandbox_cannot_outrun_budget)
{
    fixture f;
    REQUIRE(setup(&f, CR_DTYPE_F32));
    cr_error err = {0};
    CHECK(run(&f, "while true do pcall(function() while true do end end) end", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "loop forever");
    CHECK(run(&f, "while true do pcall(string.rep, 'x', 1 << 40) end", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "instruction limit exceeded");
    CHECK(run(&f, "local s = string.find(('a'):rep(40), ('a*'):rep(40) .. 'b')", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "string pattern");
    CHECK(run(&f, "for w in ('a'):rep(60):gmatch(('a-'):rep(30) .. 'b') do end", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "string pattern");
    CHECK(run(&f, "local s = ('a'):rep(100000):gsub('.-b', '')", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "string pattern");
    CHECK(run(&f, "local s = ('x'):rep(1000000)\nfor i = 1, 1e9 do local t = s .. i end", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "allocating memory");
    CHECK(run(&f, "local s = string.rep('x', 40 << 20)", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "memory limit (32 MiB)");
    CHECK(run(&f, "local t = {}\nfor i = 1, 200000 do t[i] = i end\n"
                  "for i = 1, 1e9 do table.insert(t, 1, 0) table.remove(t, 1) end", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "table.insert/remove");
    CHECK(run(&f, "table.move({}, 1, 1e12, 2)", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "table.move");
    CHECK(run(&f, "local t = setmetatable({}, { __gc = function() while true do end end })", &err)
          == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "__gc");
    CHECK(run(&f, "getmetatable(ctx.inputs[1]).__gc = function() while true do end end", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "index a string value");
    CHECK(run(&f, "getmetatable('').__index.find = nil", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "index a nil value");
    /* ordinary uses are untouched */
    uint32_t r = run(&f, "assert(('model.layers.12.mlp.up_proj.weight'):match('layers%.(%d+)%.') == '12')\n"
                         "assert(('a.b.c'):gsub('%.', '/') == 'a/b/c')\n"
                         "assert(('x[1]'):find('[', 1, true) == 2)\n"
                         "local n = 0 for w in ('a b c'):gmatch('%a+') do n = n + 1 end assert(n == 3)\n"
                         "local t = table.move({1, 2, 3}, 1, 3, 2) assert(t[4] == 3)\n"
                         "local q = {} table.insert(q, 5) table.insert(q, 1, 4)\n"
                         "assert(table.remove(q, 1) == 4 and table.remove(q) == 5 and #q == 0)\n"
                         "local m = setmetatable({}, { __index = function() return 7 end }) assert(m.x == 7)\n"
                         "return ctx.inputs[1]", &err);
    CHECK_MSG(r != CR_NO_NODE, "%s", err.msg);
    teardown(&f);
}

/* the CPU-time backstop: each s == t scans 16 MiB, so the instruction
 * budget alone would allow hours */
TEST(sandbox_cpu_time_backstop)
{
    fixture f;
    cr_graph_init(&f.g, cr_default_allocator());
    cr_lua_limits lim = { .max_bytes = (size_t)64 << 20, .max_seconds = 0.5 };
    cr_error err = {0};
    REQUIRE(cr_lua_open(cr_default_allocator(), &lim, &f.L, &err) == CR_OK);
    f.d = cr_test_graph_inputs(&f.g, 4, 8, CR_DTYPE_F32, 3, f.in);
    CHECK(run(&f, "local s, t = ('x'):rep(1 << 24), ('x'):rep(1 << 24)\n"
                  "for i = 1, 1e9 do local e = s == t end", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "time limit exceeded");
    /* and inside a message handler reached by the time limit's own error */
    CHECK(run(&f, "local s, t = ('x'):rep(1 << 24), ('x'):rep(1 << 24)\n"
                  "xpcall(function() for i = 1, 1e9 do local e = s == t end end,\n"
                  "       function() for i = 1, 1e9 do local e = s == t end end)", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "time limit exceeded");
    uint32_t r = run(&f, "return ctx.inputs[1]", &err);
    CHECK_MSG(r != CR_NO_NODE, "%s", err.msg);
    teardown(&f);
}

/* xpcall's message handler: Lua runs it at the point of the error, and
 * when the error is the budget's own (raised in the count hook) that is
 * with hooks off, so a looping handler ran for ever. */
TEST(sandbox_message_handlers)
{
    fixture f;
    REQUIRE(setup(&f, CR_DTYPE_F32));
    cr_error err = {0};
    CHECK(run(&f, "xpcall(function() while true do end end, function(e) while true do end end)", &err)
          == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "instruction limit exceeded");
    CHECK(run(&f, "while true do xpcall(error, function(e) while true do end end) end", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "instruction limit exceeded");
    CHECK(run(&f, "xpcall(function() while true do end end, function(e) local t = {} "
                  "for i = 1, 1e9 do t[i] = ('x'):rep(100) .. i end end)", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "limit");
    /* xpcall keeps its meaning: results, arguments, the handler's value */
    uint32_t r = run(&f, "local ok, a, b = xpcall(function(x, y) return x + y, 'k' end, error, 1, 2)\n"
                         "assert(ok and a == 3 and b == 'k')\n"
                         "local ok2, m = xpcall(function() error('boom', 0) end, function(e) return 'got ' .. e end)\n"
                         "assert(not ok2 and m == 'got boom')\n"
                         "local ok3, m3 = xpcall(error, function(e) error('again', 0) end, 'x')\n"
                         "assert(not ok3 and m3 == 'again')\n"
                         "assert(not pcall(xpcall, error))\n"
                         "return ctx.inputs[1]", &err);
    CHECK_MSG(r != CR_NO_NODE, "%s", err.msg);
    teardown(&f);
}

/* error() with something other than a string: the message names the
 * script line and the value's type; __tostring is never run */
TEST(error_objects_name_the_line)
{
    fixture f;
    REQUIRE(setup(&f, CR_DTYPE_F32));
    cr_error err = {0};
    CHECK(run(&f, "\nerror({})", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "test.lua:3: error object is a table value");
    CHECK(run(&f, "error(nil)", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "test.lua:2: error object is a nil value");
    CHECK(run(&f, "error(setmetatable({}, { __tostring = function() while true do end end }))", &err)
          == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "test.lua:2: error object is a table value");
    CHECK(run(&f, "local t = setmetatable({}, { __index = function() error({}) end })\nlocal x = t.y", &err)
          == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "test.lua:2: error object is a table value");
    CHECK(run(&f, "error(ctx.inputs[1])", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "test.lua:2: error object is a userdata value");
    /* strings as before */
    CHECK(run(&f, "error('plain')", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "test.lua:2: plain");
    teardown(&f);
}

/* C library loops that no instruction and no allocation paid for */
TEST(sandbox_charges_c_loops)
{
    fixture f;
    REQUIRE(setup(&f, CR_DTYPE_F32));
    cr_error err = {0};
    CHECK(run(&f, "local s = (''):rep(math.maxinteger)", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "string.rep");
    CHECK(run(&f, "local s = string.rep('', 1e15, '')", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "string.rep");
    CHECK(run(&f, "local s = table.concat(setmetatable({}, { __index = table.concat }), '', 1, 1e15)", &err)
          == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "table.concat");
    CHECK(run(&f, "local s = table.concat(setmetatable({}, { __index = table.concat, "
                  "__len = function() return 1e15 end }))", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "table.concat");
    CHECK(run(&f, "table.sort(setmetatable({}, { __index = rawlen, __newindex = rawequal, "
                  "__len = function() return (1 << 31) - 2 end }))", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "table.sort");
    CHECK(run(&f, "for i = 1, 1e9 do local a = table.unpack({}, 1, 100000) end", &err) == CR_NO_NODE);
    CHECK_CONTAINS(err.msg, "instruction limit exceeded");
    uint32_t r = run(&f, "assert(('ab'):rep(3, ',') == 'ab,ab,ab' and (''):rep(5) == '')\n"
                         "assert(table.concat({1, 2, 3}, '-') == '1-2-3' and table.concat({'a', 'b'}, '', 2) == 'b')\n"
                         "local a, b = table.unpack({4, 5}) assert(a == 4 and b == 5)\n"
                         "local s = {3, 1, 2} table.sort(s) assert(s[1] == 1 and s[3] == 3)\n"
                         "table.sort(s, function(x, y) return x > y end) assert(s[1] == 3)\n"
                         "return ctx.inputs[1]", &err);
    CHECK_MSG(r != CR_NO_NODE, "%s", err.msg);
    teardown(&f);
}

/* A method's declaration table is the script's: reading it may run its
 * metamethods, which error (was: a Lua panic, SIGABRT), loop (was: a hang)
 * or allocate past the limit (a panic). */
TEST(declaration_tables_are_protected)
{
    char dir[] = "/tmp/crucible-decl-XXXXXX";
    REQUIRE(mkdtemp(dir));
    cr_lua_limits lim = { .max_bytes = (size_t)16 << 20, .max_instructions = 5000000 };
    cr_method_registry *reg = NULL;
    cr_error err = {0};
    REQUIRE(cr_methods_open_limits(cr_default_allocator(), NULL, &lim, &reg, &err) == CR_OK);
    static const struct { const char *text, *want; } cases[] = {
        { "return setmetatable({}, { __index = function(t, k) error('no field ' .. k) end })",
          "decl0.lua:1: no field name" },
        { "return setmetatable({}, { __index = function() while true do end end })",
          "instruction limit exceeded" },
        { "return setmetatable({}, { __index = function() local t = {}\n"
          "  for i = 1, 1e9 do t[i] = ('x'):rep(1000) .. i end end })", "memory limit (16 MiB)" },
        { "return { merge = function(ctx) return ctx.inputs[1] end,\n"
          "  params = { setmetatable({}, { __index = function() while true do end end }) } }",
          "instruction limit exceeded" },
        { "return { merge = function(ctx) return ctx.inputs[1] end,\n"
          "  inputs = setmetatable({}, { __index = function() error({}) end }) }",
          "decl4.lua:2: error object is a table value" },
        { "return setmetatable({}, { __index = function() return setmetatable({}, { __tostring = "
          "function() while true do end end }) end })", "no merge function" },
    };
    for (size_t i = 0; i < CR_ARRAY_LEN(cases); i++) {
        char path[256], name[64];
        snprintf(name, sizeof name, "lua:decl%zu.lua", i);
        snprintf(path, sizeof path, "%s/decl%zu.lua", dir, i);
        FILE *fp = fopen(path, "w");
        REQUIRE(fp);
        fputs(cases[i].text, fp);
        fclose(fp);
        memset(&err, 0, sizeof err);
        CHECK_MSG(!cr_methods_find(reg, name, dir, &err), "case %zu accepted", i);
        CHECK_EQ_INT(err.status, CR_ERR_CONFIG);
        CHECK_CONTAINS(err.msg, cases[i].want);
        if (i < 5) CHECK_CONTAINS(err.msg, "reading the declaration of");
        remove(path);
    }
    /* the state goes on working */
    const cr_method_info *m = cr_methods_find(reg, "linear", dir, &err);
    CHECK(m && m->n_params > 0);
    cr_methods_close(reg);
    rmdir(dir);
}

TEST(stdlib_common_helpers)
{
    fixture f;
    REQUIRE(setup(&f, CR_DTYPE_BF16));
    cr_error err = {0};
    uint32_t r = run(&f, "local s = cr.sum_of({ctx.inputs[1], ctx.inputs[2], ctx.inputs[3]})\n"
                         "assert(s.dtype == 'bfloat16')\nreturn s", &err);
    CHECK_MSG(r != CR_NO_NODE, "%s", err.msg);
    REQUIRE(r != CR_NO_NODE);
    CHECK_EQ_INT(f.g.nodes[r].op, CR_GOP_MOV);
    CHECK_EQ_INT(f.g.nodes[f.g.nodes[r].in[0]].rdt, CR_DTYPE_F32);
    teardown(&f);
}

int main(void)
{
    RUN(arithmetic_builds_nodes);
    RUN(dtype_rules);
    RUN(precise_rounds_f32);
    RUN(reductions_and_selection);
    RUN(fma_node);
    RUN(tail_mask_node);
    RUN(library_order_reductions);
    RUN(errors_name_file_and_line);
    RUN(sandbox);
    RUN(sandbox_cannot_outrun_budget);
    RUN(sandbox_cpu_time_backstop);
    RUN(sandbox_message_handlers);
    RUN(error_objects_name_the_line);
    RUN(sandbox_charges_c_loops);
    RUN(declaration_tables_are_protected);
    RUN(stdlib_common_helpers);
    return cr_test_summary();
}
