/* interp_part.c — the VM's side of a partitioned run (spec/parts.md): the
 * part's view of the program (vm/part.h: its shards and the slice of main
 * that computes them), the inputs it reads, and its manifest
 * (formats/parts.h). The rest of the VM runs the view as it runs any
 * program; the few places that differ test m->shard_in.
 */
#include "interp.h"
#include "part.h"
#include "parts.h"

#include <string.h>

cr_status vm_part_setup(vm *m, cr_program *view, cr_error *err)
{
    const cr_program *p = m->p;
    const cr_vm_options *o = m->opt;
    if (o->part < 1 || o->part > o->n_parts)
        return cr_fail(err, CR_ERR_ARG, "part %u of %u: a part is a number from 1 to %u", o->part, o->n_parts, o->n_parts);
    cr_status s = cr_program_body_hash(p, &m->part_program, err);
    if (s) return s;
    m->shard_part = cr_calloc(m->alloc, p->n_shards + 1, sizeof *m->shard_part);
    m->shard_in = cr_calloc(m->alloc, p->n_shards + 1, 1);
    m->file_in = cr_calloc(m->alloc, p->n_files + 1, 1);
    m->aux_hash = cr_calloc(m->alloc, p->n_aux + 1, sizeof *m->aux_hash);
    if (!m->shard_part || !m->shard_in || !m->file_in || !m->aux_hash) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    cr_part_assign(p, o->n_parts, m->shard_part);
    for (uint32_t i = 0; i < p->n_shards; i++) m->shard_in[i] = m->shard_part[i] == o->part - 1;
    uint32_t n_main = 0;
    if ((s = cr_part_slice(p, m->shard_in, &m->part_main, &n_main, err))) return s;
    *view = *p;
    view->main = m->part_main;
    view->n_main = n_main;
    /* the files the part reads: only their content hashes are checked, so
     * a part reads the tensors its shards need and no other file */
    for (uint32_t pc = 0; pc < n_main; pc++) {
        const cr_insn *in = &view->main[pc];
        if (in->op == CR_OP_COPY && p->inputs[in->a].kind == CR_INPUT_FILE) m->file_in[p->inputs[in->a].file] = 1;
        if (in->op != CR_OP_KERNEL) continue;
        const cr_prog_kernel *k = &p->kernels[in->a];
        for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++)
            if (p->code[c].op == CR_OP_LOAD && p->inputs[p->code[c].a].kind == CR_INPUT_FILE)
                m->file_in[p->inputs[p->code[c].a].file] = 1;
    }
    if (o->part == 1)
        for (uint32_t i = 0; i < p->n_aux; i++)
            if (p->aux[i].kind == CR_AUX_COPY) m->file_in[p->aux[i].src_file] = 1;
    m->p = view;
    return CR_OK;
}

cr_status vm_part_publish(vm *m, cr_error *err)
{
    const cr_program *p = m->p;
    const cr_vm_options *o = m->opt;
    cr_part_file *shards = cr_calloc(m->alloc, p->n_shards + 1, sizeof *shards);
    cr_part_file *aux = cr_calloc(m->alloc, p->n_aux + 1, sizeof *aux);
    if (!shards || !aux) {
        cr_free(m->alloc, shards);
        cr_free(m->alloc, aux);
        return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < p->n_shards; i++)
        shards[i] = (cr_part_file){ S(m, p->shards[i].file_name), p->shards[i].file_size, m->shard_part[i] + 1,
                                    m->shard_in[i] != 0, m->shard_in[i] ? m->shard_hash[i] : 0 };
    uint32_t n_aux = o->part == 1 ? p->n_aux : 0;
    for (uint32_t i = 0; i < n_aux; i++) {
        const cr_prog_aux *x = &p->aux[i];
        uint64_t size = x->kind == CR_AUX_WRITE ? x->content.len : p->files[x->src_file].size;
        aux[i] = (cr_part_file){ S(m, x->dest), size, 1, true, m->aux_hash[i] };
    }
    cr_part_manifest man = { o->part, o->n_parts, m->part_program, S(m, p->recipe_name), S(m, p->tool_version),
                             shards, p->n_shards, aux, n_aux };
    cr_status s = cr_parts_publish(m->alloc, o->out_dir, &m->outdir, &man, o->force, err);
    cr_free(m->alloc, shards);
    cr_free(m->alloc, aux);
    return s;
}

void vm_part_free(vm *m, cr_program *view)
{
    (void)view;
    cr_free(m->alloc, m->shard_part);
    cr_free(m->alloc, m->shard_in);
    cr_free(m->alloc, m->file_in);
    cr_free(m->alloc, m->aux_hash);
    cr_free(m->p->alloc, m->part_main);   /* cr_part_slice's, the program's allocator */
}
