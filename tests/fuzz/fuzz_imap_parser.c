/* fuzz_imap_parser.c — libFuzzer target for proxy/imap/parser.c: the input
 * is split into chunks at points taken from its first byte, fed in order;
 * checks the invariants the gateway relies on: feed consumes something or
 * reports an event, tokens stay inside the buffer and NUL-terminated,
 * streamed bytes never exceed the announced size. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proxy/imap/parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    cg_imapp_limits lim = { .max_line = 256, .max_literal = 4096,
                            .max_nonsync = (data[0] & 1) ? 64 : 0,
                            .max_depth = 8, .max_tokens = 64,
                            .server = (data[0] & 2) != 0 };
    size_t step = (size_t)(data[0] >> 2) + 1;
    data++, size--;
    cg_imapp *p = cg_imapp_new(&lim);
    if (!p)
        return 0;
    uint64_t stream_left = 0;
    size_t pos = 0;
    while (pos < size) {
        size_t n = size - pos < step ? size - pos : step;
        size_t off = 0;
        while (off < n) {
            cg_imapp_event ev;
            size_t used = cg_imapp_feed(p, data + pos + off, n - off, &ev);
            assert(used <= n - off);
            assert(used > 0 || ev.type != CG_IMAPP_EV_NONE);
            off += used;
            switch (ev.type) {
            case CG_IMAPP_EV_COMMAND:
                for (size_t i = 0; i < cg_imapp_ntok(p); i++) {
                    const cg_imapp_tok *t = cg_imapp_tok_at(p, i);
                    const char *d = cg_imapp_data(p, t);
                    assert(d[t->len] == '\0');
                    assert(t->off + t->len <= lim.max_line);
                }
                break;
            case CG_IMAPP_EV_STREAM_START:
                stream_left = ev.lit_size;
                assert(ev.lit_size <= lim.max_literal);
                /* a refused synchronising literal: the client stops */
                if (ev.lit_sync && (ev.lit_size & 1))
                    cg_imapp_reset(p);
                break;
            case CG_IMAPP_EV_STREAM_DATA:
                assert(ev.len <= stream_left);
                stream_left -= ev.len;
                break;
            case CG_IMAPP_EV_ERROR:
                assert(ev.error != NULL);
                if (ev.fatal)
                    goto out;
                break;
            default:
                break;
            }
        }
        pos += n;
    }
out:
    cg_imapp_free(p);
    return 0;
}
