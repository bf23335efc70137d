/*
 * web.c: the apps' pages and the browser SDK, served from the files built
 * into the binary (tools/embed.c), so that one file is a whole deployment.
 *
 *   /                      a page that links the apps' portals
 *   /client/FILE           web/client/FILE (the SDK every page uses)
 *   /vendor/chart.min.js   Debian's Chart.js (libjs-chart.js), for admin pages
 *   /PORTAL/FILE           apps/APP/web/PORTAL/FILE, for the apps served
 *                          (wholesale: /partner/ and /admin/; studio: /studio/)
 *
 * `--web-root DIR` serves the same paths from a source tree instead, so
 * that pages can be edited without a rebuild.
 *
 * Answers carry an ETag (a hash of the bytes) and revalidate every time
 * (no-cache), plus headers that keep the pages to themselves: a Content
 * Security Policy of 'self' only, nosniff, no framing, no referrer.
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../core/apps.h"

#define WEB_MAX_FILE (8 * 1024 * 1024)

static const char *web_root; /* --web-root, or NULL for the built-in files */

void web_set_root(const char *dir) { web_root = dir; }

static const char *content_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
        {".json", "application/json"}, {".webmanifest", "application/manifest+json"},
        {".svg", "image/svg+xml"}, {".png", "image/png"}, {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"}, {".wav", "audio/wav"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < ARRAY_LEN(types); i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* The file behind a URL path: its asset path (apps/wholesale/web/...), or
 * NULL when the path names none. */
static bool asset_path(const char *url, char *out, size_t cap)
{
    if (strstr(url, "..") || strchr(url, '\\'))
        return false;
    if (strcmp(url, "/") == 0)
        return snprintf(out, cap, "web/index.html") < (int)cap;
    if (strncmp(url, "/client/", 8) == 0)
        return snprintf(out, cap, "web%s", url) < (int)cap;
    if (strcmp(url, "/vendor/chart.min.js") == 0)
        return snprintf(out, cap, "vendor/chart.min.js") < (int)cap;
    if (strcmp(url, "/favicon.ico") == 0 || strcmp(url, "/favicon.svg") == 0)
        return snprintf(out, cap, "web/favicon.svg") < (int)cap;
    /* /PORTAL/REST: the first app served that has web/PORTAL. */
    const char *p = url + 1, *slash = strchr(p, '/');
    if (!slash || slash == p || (size_t)(slash - p) > 32)
        return false;
    const char *rest = slash + 1;
    char portal[33];
    snprintf(portal, sizeof portal, "%.*s", (int)(slash - p), p);
    const char *names = apps_names();
    while (*names) {
        const char *comma = strchr(names, ',');
        size_t n = comma ? (size_t)(comma - names) : strlen(names);
        int w = snprintf(out, cap, "apps/%.*s/web/%s/%s", (int)n, names, portal,
                         *rest ? rest : "index.html");
        if (w > 0 && (size_t)w < cap) {
            if (web_root) {
                char full[1024];
                snprintf(full, sizeof full, "%s/%s", web_root, out);
                FILE *f = fopen(full, "rb");
                if (f) {
                    fclose(f);
                    return true;
                }
            } else if (asset_find(out)) {
                return true;
            }
        }
        names += n + (comma ? 1 : 0);
    }
    return false;
}

static bool load_file(const char *rel, buf_t *out)
{
    char full[1024];
    snprintf(full, sizeof full, "%s/%s", web_root, rel);
    if (strcmp(rel, "vendor/chart.min.js") == 0)
        snprintf(full, sizeof full, "/usr/share/javascript/chart.js/chart.min.js");
    FILE *f = fopen(full, "rb");
    if (!f)
        return false;
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0 && out->len < WEB_MAX_FILE)
        buf_put(out, tmp, n);
    fclose(f);
    return true;
}

/* Whether a request may be for a page (GET or HEAD, not under /v1/). */
bool web_serve(app_t *app, conn_t *c, http_req *req)
{
    (void)app;
    if (req->method != HTTP_GET && req->method != HTTP_HEAD)
        return false;
    char url[512];
    if (req->path_len >= sizeof url)
        return false;
    memcpy(url, req->path, req->path_len);
    url[req->path_len] = '\0';
    /* "/partner" -> "/partner/" so that relative links resolve. */
    if (url[0] == '/' && url[1] && !strchr(url + 1, '/') && !strchr(url + 1, '.')) {
        char loc[600];
        snprintf(loc, sizeof loc, "Location: %s/\r\n", url);
        char probe[520];
        snprintf(probe, sizeof probe, "%s/", url);
        char path[600];
        if (!asset_path(probe, path, sizeof path))
            return false;
        conn_set_route(c, ROUTE_WEB);
        conn_respond(c, 301, "text/plain; charset=utf-8", loc, "moved\n", 6);
        return true;
    }
    char path[600];
    if (!asset_path(url, path, sizeof path))
        return false;
    buf_t body = {0};
    const unsigned char *data;
    size_t len;
    if (web_root) {
        if (!load_file(path, &body))
            return false;
        data = (const unsigned char *)body.p;
        len = body.len;
    } else {
        const livedb_asset *a = asset_find(path);
        if (!a)
            return false;
        data = a->data;
        len = a->len;
    }
    conn_set_route(c, ROUTE_WEB);
    unsigned char h[16];
    crypto_generichash(h, sizeof h, data, len, NULL, 0);
    char etag[40];
    etag[0] = '"';
    sodium_bin2hex(etag + 1, 33, h, sizeof h);
    strcat(etag, "\"");
    size_t inm_len;
    const char *inm = http_header_get(req, "if-none-match", &inm_len);
    buf_t hdr = {0};
    buf_printf(&hdr, "ETag: %s\r\nCache-Control: no-cache\r\n"
                     "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"
                     "Content-Security-Policy: default-src 'self'; img-src 'self' data:;"
                     " style-src 'self' 'unsafe-inline'; frame-ancestors 'none'\r\n",
               etag);
    if (inm && inm_len == strlen(etag) && memcmp(inm, etag, inm_len) == 0) {
        conn_respond(c, 304, NULL, hdr.p, NULL, 0);
    } else {
        conn_respond(c, 200, content_type(path), hdr.p, (const char *)data, len);
    }
    buf_free(&hdr);
    buf_free(&body);
    return true;
}
