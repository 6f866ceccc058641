/* proxy/http/content.h — content validation on the HTTP gateway (SPEC section 6):
 * installs the request gate, the body filter and the thread end of http.h. */
#ifndef CG_CONTENT_H
#define CG_CONTENT_H

/* Call once from main, before the workers start; content_db is the
 * recorded-uploads database (each worker opens its own connection). */
void cg_content_hooks_install(const char *content_db);

#endif
