/* fuzz_imap_scan.c — libFuzzer target for proxy/imap/scan.c: the bytes of
 * every event, concatenated, must be exactly the input (the gateway
 * forwards responses through these events; an unfinished head may still
 * be held), HEAD and END alternate, and
 * literal chunks never pass a response boundary. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/imap/scan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] + 1;
    data++, size--;
    cg_imaps *s = cg_imaps_new();
    uint8_t *re = malloc(size + 1);
    if (!s || !re) {
        free(re);
        cg_imaps_free(s);
        return 0;
    }
    size_t relen = 0, pos = 0;
    bool open = false;
    while (pos < size) {
        size_t n = size - pos < step ? size - pos : step;
        size_t off = 0;
        for (;;) {
            cg_imaps_event ev;
            size_t used = cg_imaps_feed(s, data + pos + off, n - off, &ev);
            assert(used <= n - off);
            off += used;
            if (ev.type == CG_IMAPS_EV_ERROR)
                goto out;
            if (ev.type == CG_IMAPS_EV_HEAD) {
                assert(!open);
                open = true;
            }
            if (ev.type == CG_IMAPS_EV_HEAD || ev.type == CG_IMAPS_EV_DATA) {
                assert(open);
                assert(relen + ev.len <= size);
                memcpy(re + relen, ev.data, ev.len);
                relen += ev.len;
            }
            if (ev.type == CG_IMAPS_EV_END) {
                assert(open);
                open = false;
            }
            if (ev.type == CG_IMAPS_EV_NONE)
                break;
        }
        pos += n;
    }
    /* What is missing is a response head still being collected (at most
     * the head buffer), never bytes lost in the middle. */
    assert(relen <= size && size - relen < 1024);
    assert(memcmp(re, data, relen) == 0);
out:
    free(re);
    cg_imaps_free(s);
    return 0;
}
