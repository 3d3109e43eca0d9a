/* spm_model.h — the pieces of a SentencePiece model file (tokenizer.model,
 * sentencepiece_model.proto's ModelProto), as llama.cpp's converter reads
 * them through SentencePieceProcessor: each piece's text, score and type.
 *
 * ModelProto field 1 (repeated SentencePiece: 1 piece, 2 score, 3 type) is
 * decoded, and the few TrainerSpec (field 2) and NormalizerSpec (field 3)
 * settings that transformers' slow-to-fast conversion reads (cr_spm_spec);
 * every other field is skipped by its wire type. The reader is
 * strict: every length lies inside the buffer, varints are at most 10
 * bytes, wire types are the five protobuf defines (groups refused), a piece
 * has text of valid UTF-8 and a known type, and the model has at least one
 * piece and at most CR_SPM_MAX_PIECES, and (as SentencePieceProcessor
 * refuses otherwise) exactly one UNKNOWN piece and no piece twice.
 */
#ifndef CR_SPM_MODEL_H
#define CR_SPM_MODEL_H

#include "base.h"

#define CR_SPM_MAX_PIECES (1u << 24)

/* sentencepiece's SentencePiece.Type */
typedef enum cr_spm_type {
    CR_SPM_NORMAL = 1,
    CR_SPM_UNKNOWN = 2,
    CR_SPM_CONTROL = 3,
    CR_SPM_USER_DEFINED = 4,
    CR_SPM_UNUSED = 5,
    CR_SPM_BYTE = 6,
} cr_spm_type;

typedef struct cr_spm_piece {
    char *text;                 /* NUL-terminated UTF-8 (a NUL inside is refused) */
    float score;                /* 0 when absent, as protobuf's default */
    cr_spm_type type;           /* NORMAL when absent */
} cr_spm_piece;

/* TrainerSpec / NormalizerSpec settings, with sentencepiece_model.proto's
 * defaults where a field is absent */
typedef struct cr_spm_spec {
    int32_t model_type;         /* TrainerSpec 3: 1 UNIGRAM (default), 2 BPE, 3 WORD, 4 CHAR */
    bool byte_fallback;         /* TrainerSpec 35 */
    int32_t unk_id, bos_id, eos_id, pad_id;     /* 40..43: 0, 1, 2, -1 */
    const char *unk_piece, *bos_piece, *eos_piece, *pad_piece;  /* 45..48 */
    const uint8_t *charsmap;    /* NormalizerSpec 2 (precompiled_charsmap); NULL when empty */
    size_t charsmap_len;
    bool add_dummy_prefix;      /* NormalizerSpec 3, default true */
    bool remove_extra_whitespaces;      /* 4, default true */
    bool escape_whitespaces;    /* 5, default true */
} cr_spm_spec;

typedef struct cr_spm_model {
    const cr_allocator *alloc;
    cr_spm_piece *pieces;
    uint32_t n_pieces;
    cr_spm_spec spec;
    char *text;                 /* private: all piece texts */
    uint8_t *spec_buf;          /* private: the spec's strings and charsmap */
} cr_spm_model;

/* Decode `len` bytes of a ModelProto. `what` names the file in messages.
 * Errors: FORMAT (naming the byte offset and what is wrong), NOMEM. */
cr_status cr_spm_parse(const cr_allocator *alloc, const uint8_t *buf, size_t len, const char *what,
                       cr_spm_model *out, cr_error *err);
void cr_spm_free(cr_spm_model *m);

#endif
