/* cg_error.c — names and messages for the codes of cg_error.h. */
#include "common/cg_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *cg_errname(int err)
{
    switch (err) {
    case 0: return "OK";
#define CG_E_NAME(name, code, msg) case code: return "CG_E_" #name;
    CG_ERRNO_MAP(CG_E_NAME)
#undef CG_E_NAME
    default: return err < 0 && err > -1000 ? "ERRNO" : "UNKNOWN";
    }
}

const char *cg_strerror(int err)
{
    switch (err) {
    case 0: return "success";
#define CG_E_MSG(name, code, msg) case code: return msg;
    CG_ERRNO_MAP(CG_E_MSG)
#undef CG_E_MSG
    default: return err < 0 && err > -1000 ? strerror(-err) : "unknown error";
    }
}

const char *cg_say(const char *fmt, ...)
{
    static _Thread_local char ring[CG_SAY_RING][CG_SAY_MAX];
    static _Thread_local unsigned next;
    char text[CG_SAY_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    char *slot = ring[next++ % CG_SAY_RING];
    memcpy(slot, text, sizeof text);
    return slot;
}
