/* xml_safe.c — hardened libxml2 parsing of untrusted XML (see xml_safe.h).
 * libxml2 2.9 has no switch that turns DTDs or entity declarations off
 * (XML_PARSE_NOENT turns substitution ON), and a byte search for
 * "<!DOCTYPE" misses the same markup in UTF-16. So the refusals live in
 * SAX handlers: the parser calls internalSubset at the DOCTYPE, before it
 * reads a single declaration, and getEntity at every reference that is not
 * one of the five predefined entities; both stop the parser there. */
#include "policy/xml_safe.h"

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <libxml/SAX2.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>

#include "common/cg_error.h"

typedef struct guard {
    const cg_xml_limits *lim;
    unsigned depth;
    int refused;           /* 0, or the CG_E_* of the first refusal */
    const char *why;       /* its sentence, after the document's name */
    char detail[200];      /* libxml2's first error message */
} guard;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_parser(void)
{
    xmlInitParser();
}

static guard *guard_of(void *ctx)
{
    return ((xmlParserCtxtPtr)ctx)->_private;
}

static void refuse(void *ctx, int rc, const char *why)
{
    guard *g = guard_of(ctx);
    if (!g->refused) {
        g->refused = rc;
        g->why = why;
    }
    xmlStopParser(ctx);
}

/* DOCTYPE: a DTD brings entity declarations (billion laughs, external
 * entities) and external fetches; no document we read needs one. */
static void on_internal_subset(void *ctx, const xmlChar *name, const xmlChar *ext_id,
                               const xmlChar *sys_id)
{
    (void)name, (void)ext_id, (void)sys_id;
    refuse(ctx, CG_E_PARSE, "must not have a DOCTYPE");
}

static void on_entity_decl(void *ctx, const xmlChar *name, int type, const xmlChar *pub,
                           const xmlChar *sys, xmlChar *content)
{
    (void)name, (void)type, (void)pub, (void)sys, (void)content;
    refuse(ctx, CG_E_PARSE, "must not declare entities");
}

/* Called for every &name; that is not &lt; &gt; &amp; &apos; &quot; (the
 * parser answers those itself before asking): there is nothing else. */
static xmlEntityPtr on_get_entity(void *ctx, const xmlChar *name)
{
    (void)name;
    refuse(ctx, CG_E_PARSE, "must not reference entities");
    return NULL;
}

static void on_start(void *ctx, const xmlChar *local, const xmlChar *prefix,
                     const xmlChar *uri, int nns, const xmlChar **nss, int nattr,
                     int ndefaulted, const xmlChar **attrs)
{
    guard *g = guard_of(ctx);
    if (++g->depth > g->lim->max_depth) {
        refuse(ctx, CG_E_LIMIT, "is nested too deeply");
        return;
    }
    xmlSAX2StartElementNs(ctx, local, prefix, uri, nns, nss, nattr, ndefaulted, attrs);
}

static void on_end(void *ctx, const xmlChar *local, const xmlChar *prefix,
                   const xmlChar *uri)
{
    guard_of(ctx)->depth--;
    xmlSAX2EndElementNs(ctx, local, prefix, uri);
}

void cg_xml_error_text(const xmlError *e, char *out, size_t cap)
{
    snprintf(out, cap, "%s", e && e->message ? e->message : "");
    size_t n = strlen(out);
    while (n && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
    /* the text goes into one-line answers and logs: no control bytes
     * (libxml2 quotes the offending input, which may hold any) */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
            out[i] = ' ';
}

static void on_error(void *ctx, xmlErrorPtr e)
{
    guard *g = guard_of(ctx);
    if (!g->detail[0] && e && e->level >= XML_ERR_ERROR)
        cg_xml_error_text(e, g->detail, sizeof g->detail);
}

/* error_r must outlive the call: one sentence buffer per thread. */
static _Thread_local char sentence[400];

static const char *say(const cg_xml_limits *lim, const char *why, const char *detail)
{
    if (detail && *detail)
        snprintf(sentence, sizeof sentence, "%s %s: %s", lim->what, why, detail);
    else
        snprintf(sentence, sizeof sentence, "%s %s", lim->what, why);
    return sentence;
}

int cg_xml_parse_untrusted(const void *buf, size_t len, const cg_xml_limits *lim,
                           xmlDocPtr *doc_r, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    *doc_r = NULL;
    if (len > lim->max_bytes || len > INT_MAX) {
        char why[64];
        if (lim->max_bytes % 1024 == 0)
            snprintf(why, sizeof why, "is too large (more than %zu KiB)", lim->max_bytes / 1024);
        else
            snprintf(why, sizeof why, "is too large (more than %zu bytes)", lim->max_bytes);
        *error_r = say(lim, why, NULL);
        return CG_E_LIMIT;
    }
    if (len == 0) { /* libxml2 makes no context for no bytes */
        *error_r = say(lim, "is not well-formed XML", "the document is empty");
        return CG_E_PARSE;
    }
    pthread_once(&init_once, init_parser);
    xmlParserCtxtPtr ctxt = xmlCreateMemoryParserCtxt(buf, (int)len);
    if (!ctxt) {
        *error_r = say(lim, "could not be parsed", "out of memory");
        return CG_E_NOMEM;
    }
    guard g = { .lim = lim };
    ctxt->_private = &g;
    /* no NOENT (substitution on), DTDLOAD, DTDATTR, DTDVALID, XINCLUDE,
     * HUGE (lifts libxml2's own limits) or RECOVER; NONET in case some
     * path still reaches for a URL */
    xmlCtxtUseOptions(ctxt, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                                XML_PARSE_NOCDATA);
    xmlSAXHandlerPtr sax = ctxt->sax;
    sax->internalSubset = on_internal_subset;
    sax->externalSubset = on_internal_subset;
    sax->entityDecl = on_entity_decl;
    sax->getEntity = on_get_entity;
    sax->getParameterEntity = on_get_entity;
    sax->startElementNs = on_start;
    sax->endElementNs = on_end;
    sax->serror = on_error;
    sax->error = NULL;
    sax->warning = NULL;
    sax->fatalError = NULL;

    xmlParseDocument(ctxt);
    xmlDocPtr doc = ctxt->myDoc;
    ctxt->myDoc = NULL;
    bool well_formed = ctxt->wellFormed;
    xmlFreeParserCtxt(ctxt);

    int rc = 0;
    if (g.refused) {
        rc = g.refused;
        if (rc == CG_E_LIMIT) {
            char why[64];
            snprintf(why, sizeof why, "is nested deeper than %u levels", lim->max_depth);
            *error_r = say(lim, why, NULL);
        } else {
            *error_r = say(lim, g.why, NULL);
        }
    } else if (!well_formed || !doc) {
        rc = CG_E_PARSE;
        *error_r = say(lim, "is not well-formed XML", g.detail);
    } else if (doc->intSubset || doc->extSubset) {
        rc = CG_E_PARSE; /* cannot happen past on_internal_subset: kept as a net */
        *error_r = say(lim, "must not have a DOCTYPE", NULL);
    } else if (!xmlDocGetRootElement(doc)) {
        rc = CG_E_PARSE;
        *error_r = say(lim, "is not well-formed XML", "no root element");
    }
    if (rc < 0) {
        if (doc)
            xmlFreeDoc(doc);
        return rc;
    }
    *doc_r = doc;
    return 0;
}
