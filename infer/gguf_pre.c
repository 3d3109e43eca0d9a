/* gguf_pre.c — tokenizer.ggml.pre by llama.cpp's hash of a test text
 * (spec/gguf.md §5). The table is generated from the pinned converter
 * (gguf_pre_table.h, tests/golden/gguf/gen_pre_table.py). */
#include "gguf_pre.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "hash.h"
#include "tokenizer.h"
#include "gguf_pre_table.h"

/* Octal escapes take at most 3 digits: "\2341314151" is byte 0234 then
 * "1314151". sha256 of these 431 bytes is a36179c1...526da (test_gguf.c). */
const char cr_gguf_chktxt[] =
"\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\360\237\232\200 (normal) \360\237\230\266\342\200\215\360\237\214\253\357\270\217 (multiple emojis concatenated) \342\234\205 \360\237\246\231\360\237\246\231 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 \341\236\200\341\236\266\341\236\223\341\237\213\341\236\217\341\237\202\341\236\226\341\236\267\341\236\237\341\237\201\341\236\237\341\236\242\341\236\266\341\236\205\360\237\230\201 ?\346\210\221\346\203\263\345\234\250apple\345\267\245\344\275\2341314151\345\244\251\357\275\236 ------======= \320\275\320\265\321\211\320\276 \320\275\320\260 \320\221\321\212\320\273\320\263\320\260\321\200\321\201\320\272\320\270 ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL";

cr_status cr_gguf_chkhsh(const cr_allocator *alloc, const int32_t *ids, size_t n, char hex[65], cr_error *err)
{
    /* Python's str(list): "[" + ", ".join(ids) + "]"; 13 bytes per id at most */
    if (n > SIZE_MAX / 16) return cr_fail(err, CR_ERR_LIMIT, "GGUF pre hash: too many ids");
    char *text = cr_malloc(alloc, 3 + n * 13);
    if (!text) return cr_fail(err, CR_ERR_NOMEM, "GGUF pre hash: out of memory");
    size_t len = 0;
    text[len++] = '[';
    for (size_t i = 0; i < n; i++) len += (size_t)sprintf(text + len, i ? ", %d" : "%d", (int)ids[i]);
    text[len++] = ']';
    uint8_t d[32];
    cr_sha256(text, len, d);
    cr_free(alloc, text);
    for (int i = 0; i < 32; i++) sprintf(hex + 2 * i, "%02x", d[i]);
    hex[64] = 0;
    return CR_OK;
}

const char *cr_gguf_pre_lookup(const char *hex)
{
    const char *res = NULL;    /* a later entry overrides an earlier one */
    for (size_t i = 0; i < CR_ARRAY_LEN(cr_gguf_pre_table); i++)
        if (!strcmp(cr_gguf_pre_table[i].chkhsh, hex)) res = cr_gguf_pre_table[i].pre;
    return res;
}

bool cr_gguf_pre_known(const char *name)
{
    for (size_t i = 0; i < CR_ARRAY_LEN(cr_gguf_pre_table); i++)
        if (!strcmp(cr_gguf_pre_table[i].pre, name)) return true;
    return false;
}

/* the hash and its name for a loaded tokenizer; `what` names it in messages */
static cr_status detect(const cr_allocator *alloc, cr_tokenizer *tok, const char *what, const char **pre, char hex[65],
                        cr_error *err)
{
    cr_vec ids;
    cr_vec_init(&ids, alloc, sizeof(int32_t));
    /* transformers' encode() default: add_special_tokens=True */
    cr_status st = cr_tokenizer_encode(tok, cr_gguf_chktxt, CR_GGUF_CHKTXT_LEN, true, &ids, err);
    if (st == CR_OK) {
        st = cr_gguf_chkhsh(alloc, (const int32_t *)ids.data, ids.len, hex, err);
        if (st == CR_OK) *pre = cr_gguf_pre_lookup(hex);
        if (st == CR_OK && !*pre)
            st = cr_fail(err, CR_ERR_UNSUPPORTED,
                         "%s: GGUF: the tokenizer's pre-tokenizer is not one llama.cpp's converter recognises "
                         "(chkhsh %s); pass --gguf-pre NAME to choose one", what, hex);
    }
    cr_vec_free(&ids);
    return st;
}

cr_status cr_gguf_pre_detect(const cr_allocator *alloc, const char *path, const char **pre, char hex[65],
                             cr_error *err)
{
    *pre = NULL;
    hex[0] = 0;
    cr_tokenizer *tok = NULL;
    cr_status st = cr_tokenizer_load(alloc, path, &tok, err);
    if (st) return st;
    st = detect(alloc, tok, path, pre, hex, err);
    cr_tokenizer_free(tok);
    return st;
}

cr_status cr_gguf_pre_detect_json(const cr_allocator *alloc, const char *json, size_t len, const char *what,
                                  const char **pre, char hex[65], cr_error *err)
{
    *pre = NULL;
    hex[0] = 0;
    cr_tokenizer *tok = NULL;
    cr_status st = cr_tokenizer_load_json(alloc, json, len, what, &tok, err);
    if (st) return st;
    st = detect(alloc, tok, what, pre, hex, err);
    cr_tokenizer_free(tok);
    return st;
}
