/* xml_safe.h — the one way cpmgate parses XML it did not write (SAML
 * assertions, content manifests, WebDAV multistatus answers): libxml2 with
 * no DTD, no entities, no network, and bounds on size and depth, each
 * enforced inside the parser rather than by looking at the bytes first. */
#ifndef CG_XML_SAFE_H
#define CG_XML_SAFE_H

#include <stddef.h>

#include <libxml/tree.h>
#include <libxml/xmlerror.h>

typedef struct cg_xml_limits {
    const char *what;   /* names the document in error sentences */
    size_t max_bytes;   /* the encoded document as received */
    unsigned max_depth; /* element nesting; the root element is level 1 */
} cg_xml_limits;

/* Parses len bytes (any encoding libxml2 detects: UTF-8, UTF-16 with or
 * without BOM, a declared one) into *doc_r, which the caller frees with
 * xmlFreeDoc. Refused, with *doc_r NULL and one sentence in *error_r (valid
 * until this thread's next call):
 *   CG_E_LIMIT  larger than max_bytes, or nested deeper than max_depth;
 *   CG_E_PARSE  a DOCTYPE (internal or external subset), an entity
 *               declaration or a reference to any but the five predefined
 *               entities, not well-formed, or no root element.
 * The parser is stopped at the first DOCTYPE or over-deep element, so
 * nothing in a refused document is expanded or fetched. Needs
 * xmlInitParser() once per process (main, or the first caller). */
int cg_xml_parse_untrusted(const void *buf, size_t len, const cg_xml_limits *limits,
                           xmlDocPtr *doc_r, const char **error_r)
    __attribute__((warn_unused_result));

/* libxml2's message of e as one line for error_r and logs: trailing
 * newline dropped, control bytes made spaces. "" when e has none. */
void cg_xml_error_text(const xmlError *e, char *out, size_t cap);

#endif
