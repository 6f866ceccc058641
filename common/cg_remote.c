/* common/cg_remote.c — checks and one spelling for a peer's domain and a
 * remote user's address (see cg_remote.h). */
#include "common/cg_remote.h"

#include <ctype.h>
#include <string.h>

bool cg_remote_domain(const char *in, size_t len, char *out, size_t cap)
{
    if (!in || len == 0 || len > CG_REMOTE_DOMAIN_MAX || len >= cap || in[len - 1] == '.')
        return false;
    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? in[i] : '\0';
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || in[i - 1] == '-')
                return false;
            label = 0;
        } else if (isalnum((unsigned char)c) || (c == '-' && label > 0)) {
            label++;
        } else {
            return false;
        }
        out[i] = (char)tolower((unsigned char)c);
    }
    return true;
}

bool cg_remote_user(const char *in, size_t len, bool wildcard, char *out, size_t cap,
                    size_t *at)
{
    const char *sep = in ? memchr(in, '@', len) : NULL;
    if (!sep)
        return false;
    size_t ll = (size_t)(sep - in);
    if (ll == 0 || ll > CG_REMOTE_LOCAL_MAX || ll + 1 >= cap)
        return false;
    bool star = wildcard && ll == 1 && in[0] == '*';
    for (size_t i = 0; i < ll && !star; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c <= 0x20 || c >= 0x7f || strchr("@*%\"\\/()", c))
            return false;
    }
    memcpy(out, in, ll);
    out[ll] = '@';
    if (!cg_remote_domain(sep + 1, len - ll - 1, out + ll + 1, cap - ll - 1))
        return false;
    if (at)
        *at = ll;
    return true;
}

bool cg_remote_txid(const char *v, size_t len)
{
    if (!v || len == 0 || len >= CG_REMOTE_TXID_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)v[i]) && (!v[i] || !strchr("._:-", v[i])))
            return false;
    return true;
}
