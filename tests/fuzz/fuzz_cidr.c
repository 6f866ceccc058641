/* fuzz_cidr.c — libFuzzer target for cg_cidr_parse (policy/identity.c),
 * which reads what administrators type into cpmgatectl and what the
 * gateway reloads from the policy database. Invariants on every accepted
 * input: the canonical form parses back to the same network, host bits
 * are zero, and the network's own address matches it. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/cidr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[160];
    if (size >= sizeof text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    cg_cidr c;
    const char *err = NULL;
    if (cg_cidr_parse(text, &c, &err) != 0) {
        if (!err)
            abort(); /* every refusal says why */
        return 0;
    }
    unsigned max = c.family == 4 ? 32 : 128;
    if ((c.family != 4 && c.family != 6) || c.prefix > max)
        abort();
    char canon[64], again[64];
    cg_cidr_format(&c, canon);
    cg_cidr d;
    if (cg_cidr_parse(canon, &d, &err) != 0 || memcmp(&c, &d, sizeof c) != 0)
        abort();
    cg_cidr_format(&d, again);
    if (strcmp(canon, again) != 0)
        abort();
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (c.family == 4) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, c.addr, 4);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, c.addr, 16);
    }
    if (!cg_cidr_match(&c, (const struct sockaddr *)&ss))
        abort();
    return 0;
}
