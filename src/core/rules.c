/*
 * rules.c: see rules.h.
 *
 * A recursive-descent parser over the text builds a small tree; the
 * evaluator walks it. Recursion is bounded (RULE_MAX_DEPTH) and so is the
 * text (RULE_MAX_LEN), so that a hostile rule cannot exhaust the stack.
 */
#include "rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"
#include "doc.h"

typedef enum { N_OR, N_AND, N_NOT, N_CMP, N_PATH, N_LIT } ntype;
typedef enum { C_EQ, C_NE, C_LT, C_LE, C_GT, C_GE, C_IN } ctype;
enum { ROOT_AUTH, ROOT_DOC, ROOT_NEW };

typedef struct node {
    ntype t;
    ctype op;
    struct node *a, *b;
    int root;     /* N_PATH */
    char *path;   /* N_PATH: field path below the root, "" for the root */
    json_t *lit;  /* N_LIT */
} node;

struct rule {
    node *root;
    char *text;
};

static void node_free(node *n)
{
    if (!n)
        return;
    node_free(n->a);
    node_free(n->b);
    free(n->path);
    json_decref(n->lit);
    free(n);
}

static node *mk(ntype t)
{
    node *n = xcalloc(1, sizeof *n);
    n->t = t;
    return n;
}

static node *lit(json_t *v) /* takes v */
{
    node *n = mk(N_LIT);
    n->lit = v;
    return n;
}

/* ------------------------------------------------------------------ parser */

typedef struct parser {
    const char *s;
    size_t n, i;
    int depth;
    err_t *err;
    bool failed;
} parser;

static node *fail(parser *p, const char *what)
{
    if (!p->failed)
        err_set(p->err, E_BAD_REQUEST, "rule: %s at column %zu", what, p->i + 1);
    p->failed = true;
    return NULL;
}

static void ws(parser *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' ||
                           p->s[p->i] == '\r'))
        p->i++;
}

static bool eat(parser *p, const char *tok)
{
    ws(p);
    size_t k = strlen(tok);
    if (p->n - p->i >= k && memcmp(p->s + p->i, tok, k) == 0) {
        p->i += k;
        return true;
    }
    return false;
}

static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_alnum(char c) { return is_alpha(c) || (c >= '0' && c <= '9'); }

/* A word (identifier) at the cursor, without consuming it. */
static size_t word_len(parser *p)
{
    size_t k = 0;
    if (p->i < p->n && is_alpha(p->s[p->i]))
        while (p->i + k < p->n && is_alnum(p->s[p->i + k]))
            k++;
    return k;
}

static bool eat_word(parser *p, const char *w)
{
    ws(p);
    size_t k = word_len(p);
    if (k == strlen(w) && memcmp(p->s + p->i, w, k) == 0) {
        p->i += k;
        return true;
    }
    return false;
}

static node *expr(parser *p);

/* A JSON string or number literal, read by jansson from the text. */
static json_t *json_literal(parser *p)
{
    size_t start = p->i, j = p->i;
    if (p->s[j] == '"') {
        for (j++; j < p->n && p->s[j] != '"'; j++)
            if (p->s[j] == '\\')
                j++;
        if (j >= p->n)
            return NULL;
        j++;
    } else {
        while (j < p->n && (p->s[j] == '-' || p->s[j] == '+' || p->s[j] == '.' ||
                            p->s[j] == 'e' || p->s[j] == 'E' || (p->s[j] >= '0' && p->s[j] <= '9')))
            j++;
    }
    err_t e = {0};
    json_t *v = json_parse_strict(p->s + start, j - start, &e);
    err_clear(&e);
    if (v)
        p->i = j;
    return v;
}

static json_t *scalar(parser *p)
{
    ws(p);
    if (p->i >= p->n)
        return NULL;
    if (eat_word(p, "true"))
        return json_true();
    if (eat_word(p, "false"))
        return json_false();
    if (eat_word(p, "null"))
        return json_null();
    char c = p->s[p->i];
    if (c == '"' || c == '-' || (c >= '0' && c <= '9'))
        return json_literal(p);
    return NULL;
}

static node *operand(parser *p)
{
    ws(p);
    if (p->i >= p->n)
        return fail(p, "an operand is missing");
    if (eat(p, "(")) {
        node *n = expr(p);
        if (!n)
            return NULL;
        if (!eat(p, ")")) {
            node_free(n);
            return fail(p, "')' expected");
        }
        return n;
    }
    if (eat(p, "[")) {
        json_t *arr = json_array();
        if (!eat(p, "]")) {
            do {
                json_t *v = scalar(p);
                if (!v) {
                    json_decref(arr);
                    return fail(p, "a list holds strings, numbers, true, false or null");
                }
                json_array_append_new(arr, v);
                if (json_array_size(arr) > 100) {
                    json_decref(arr);
                    return fail(p, "a list holds at most 100 values");
                }
            } while (eat(p, ","));
            if (!eat(p, "]")) {
                json_decref(arr);
                return fail(p, "']' expected");
            }
        }
        return lit(arr);
    }
    static const char *const roots[] = {"auth", "doc", "new"};
    for (int r = 0; r < 3; r++) {
        size_t save = p->i;
        if (!eat_word(p, roots[r]))
            continue;
        buf_t path = {0};
        while (p->i < p->n && p->s[p->i] == '.') {
            p->i++;
            size_t k = word_len(p);
            if (!k) {
                buf_free(&path);
                return fail(p, "a field name is expected after '.'");
            }
            if (path.len)
                buf_putc(&path, '.');
            buf_put(&path, p->s + p->i, k);
            p->i += k;
        }
        err_t e = {0};
        if (path.len && query_check_field(path.p, path.len, &e)) {
            err_clear(&e);
            buf_free(&path);
            p->i = save;
            return fail(p, "a field path is at most 8 names and 128 characters");
        }
        node *n = mk(N_PATH);
        n->root = r;
        n->path = path.p ? buf_take(&path, NULL) : xstrdup("");
        return n;
    }
    json_t *v = scalar(p);
    if (v)
        return lit(v);
    return fail(p, "expected auth.…, doc.…, new.…, a string, a number, true, false, null, [ or (");
}

static node *cmp(parser *p)
{
    node *a = operand(p);
    if (!a)
        return NULL;
    static const struct {
        const char *tok;
        ctype op;
    } ops[] = {{"==", C_EQ}, {"!=", C_NE}, {"<=", C_LE}, {">=", C_GE}, {"<", C_LT}, {">", C_GT}};
    for (size_t i = 0; i < ARRAY_LEN(ops); i++) {
        if (eat(p, ops[i].tok)) {
            node *b = operand(p);
            if (!b) {
                node_free(a);
                return NULL;
            }
            node *n = mk(N_CMP);
            n->op = ops[i].op;
            n->a = a;
            n->b = b;
            return n;
        }
    }
    if (eat_word(p, "in")) {
        node *b = operand(p);
        if (!b) {
            node_free(a);
            return NULL;
        }
        node *n = mk(N_CMP);
        n->op = C_IN;
        n->a = a;
        n->b = b;
        return n;
    }
    return a;
}

static node *unary(parser *p)
{
    ws(p);
    if (p->i < p->n && p->s[p->i] == '!' && !(p->i + 1 < p->n && p->s[p->i + 1] == '=')) {
        p->i++;
        if (++p->depth > RULE_MAX_DEPTH)
            return fail(p, "the rule nests too deep");
        node *a = unary(p);
        p->depth--;
        if (!a)
            return NULL;
        node *n = mk(N_NOT);
        n->a = a;
        return n;
    }
    return cmp(p);
}

static node *binary(parser *p, bool is_or)
{
    node *a = is_or ? binary(p, false) : unary(p);
    while (a && eat(p, is_or ? "||" : "&&")) {
        node *b = is_or ? binary(p, false) : unary(p);
        if (!b) {
            node_free(a);
            return NULL;
        }
        node *n = mk(is_or ? N_OR : N_AND);
        n->a = a;
        n->b = b;
        a = n;
    }
    return a;
}

static node *expr(parser *p)
{
    if (++p->depth > RULE_MAX_DEPTH)
        return fail(p, "the rule nests too deep");
    node *n = binary(p, true);
    p->depth--;
    return n;
}

rule_t *rule_parse(const char *text, size_t len, err_t *err)
{
    if (len == 0 || len > RULE_MAX_LEN) {
        err_set(err, E_BAD_REQUEST, "rule: must be 1-%d characters", RULE_MAX_LEN);
        return NULL;
    }
    parser p = {.s = text, .n = len, .err = err};
    node *root = expr(&p);
    if (root) {
        ws(&p);
        if (p.i != p.n) {
            node_free(root);
            root = fail(&p, "unexpected text");
        }
    }
    if (!root) {
        if (!p.failed)
            fail(&p, "not a rule");
        return NULL;
    }
    rule_t *r = xcalloc(1, sizeof *r);
    r->root = root;
    r->text = xstrndup(text, len);
    return r;
}

void rule_free(rule_t *r)
{
    if (!r)
        return;
    node_free(r->root);
    free(r->text);
    free(r);
}

const char *rule_text(const rule_t *r) { return r->text; }

static int uses(const node *n)
{
    if (!n)
        return 0;
    if (n->t == N_PATH)
        return 1 << n->root;
    return uses(n->a) | uses(n->b);
}

int rule_uses(const rule_t *r) { return uses(r->root); }

/* ------------------------------------------------------------------ evaluation */

typedef struct ctx {
    const json_t *roots[3];
} ctx;

static bool truthy(const json_t *v)
{
    if (!v)
        return false;
    switch (json_typeof(v)) {
    case JSON_TRUE: return true;
    case JSON_INTEGER: return json_integer_value(v) != 0;
    case JSON_REAL: return json_real_value(v) != 0;
    case JSON_STRING: return json_string_length(v) > 0;
    case JSON_ARRAY: return json_array_size(v) > 0;
    case JSON_OBJECT: return json_object_size(v) > 0;
    default: return false;
    }
}

static bool equal(const json_t *a, const json_t *b)
{
    if (json_is_array(a) || json_is_object(a) || json_is_array(b) || json_is_object(b))
        return json_equal((json_t *)a, (json_t *)b);
    return query_scalar_eq(a, b);
}

static bool truth(const node *n, const ctx *c);

/* The value of an operand (borrowed); NULL means null. */
static const json_t *value(const node *n, const ctx *c)
{
    switch (n->t) {
    case N_LIT: return n->lit;
    case N_PATH: {
        const json_t *root = c->roots[n->root];
        if (!root || !n->path[0])
            return root;
        return query_field(root, n->path);
    }
    default: return truth(n, c) ? json_true() : json_false();
    }
}

static bool compare_nodes(const node *n, const ctx *c)
{
    const json_t *a = value(n->a, c), *b = value(n->b, c);
    json_t *null = json_null();
    if (!a)
        a = null;
    if (!b)
        b = null;
    bool ok;
    int k;
    switch (n->op) {
    case C_EQ: return equal(a, b);
    case C_NE: return !equal(a, b);
    case C_IN:
        if (!json_is_array(b))
            return false;
        for (size_t i = 0; i < json_array_size(b); i++)
            if (equal(a, json_array_get(b, i)))
                return true;
        return false;
    default:
        k = query_compare(a, b, &ok);
        if (!ok)
            return false;
        return n->op == C_LT ? k < 0 : n->op == C_LE ? k <= 0 : n->op == C_GT ? k > 0 : k >= 0;
    }
}

static bool truth(const node *n, const ctx *c)
{
    switch (n->t) {
    case N_OR: return truth(n->a, c) || truth(n->b, c);
    case N_AND: return truth(n->a, c) && truth(n->b, c);
    case N_NOT: return !truth(n->a, c);
    case N_CMP: return compare_nodes(n, c);
    default: return truthy(value(n, c));
    }
}

bool rule_eval(const rule_t *r, const json_t *auth, const json_t *doc, const json_t *newdoc)
{
    ctx c = {{auth, doc, newdoc}};
    return truth(r->root, &c);
}

/* ------------------------------------------------------------------ partial evaluation */

static bool is_const(const node *n) { return n->t == N_LIT; }

/* A copy of n with auth paths replaced by their values and constants
 * folded. Literals stand for their truth where a boolean is wanted. */
static node *partial(const node *n, const json_t *auth)
{
    switch (n->t) {
    case N_LIT: return lit(json_deep_copy(n->lit));
    case N_PATH: {
        if (n->root != ROOT_AUTH) {
            node *m = mk(N_PATH);
            m->root = n->root;
            m->path = xstrdup(n->path);
            return m;
        }
        const json_t *v = !auth || !n->path[0] ? auth : query_field(auth, n->path);
        return lit(v ? json_deep_copy(v) : json_null());
    }
    case N_NOT: {
        node *a = partial(n->a, auth);
        if (is_const(a)) {
            bool t = truthy(a->lit);
            node_free(a);
            return lit(json_boolean(!t));
        }
        node *m = mk(N_NOT);
        m->a = a;
        return m;
    }
    case N_AND:
    case N_OR: {
        bool is_and = n->t == N_AND;
        node *a = partial(n->a, auth), *b = partial(n->b, auth);
        /* x && false = false, x && true = x; x || true = true, x || false = x. */
        for (int side = 0; side < 2; side++) {
            node *k = side ? b : a, *other = side ? a : b;
            if (!is_const(k))
                continue;
            bool t = truthy(k->lit);
            if (t != is_and) { /* decides the whole */
                node_free(a);
                node_free(b);
                return lit(json_boolean(t));
            }
            node_free(k);
            if (is_const(other)) { /* keep the truth, not the value */
                bool ot = truthy(other->lit);
                node_free(other);
                return lit(json_boolean(ot));
            }
            if (other->t == N_PATH) {
                /* `true && doc.x` is the truth of doc.x, not its value
                 * (it may be compared): !!doc.x keeps it a boolean. */
                node *inner = mk(N_NOT), *outer = mk(N_NOT);
                inner->a = other;
                outer->a = inner;
                return outer;
            }
            return other;
        }
        node *m = mk(n->t);
        m->a = a;
        m->b = b;
        return m;
    }
    case N_CMP: {
        node *m = mk(N_CMP);
        m->op = n->op;
        m->a = partial(n->a, auth);
        m->b = partial(n->b, auth);
        if (is_const(m->a) && is_const(m->b)) {
            ctx c = {{NULL, NULL, NULL}};
            bool t = compare_nodes(m, &c);
            node_free(m);
            return lit(json_boolean(t));
        }
        return m;
    }
    }
    return NULL;
}

rule_t *rule_partial(const rule_t *r, const json_t *auth, bool *constant)
{
    node *n = partial(r->root, auth);
    if (is_const(n)) {
        *constant = truthy(n->lit);
        node_free(n);
        return NULL;
    }
    rule_t *out = xcalloc(1, sizeof *out);
    out->root = n;
    out->text = xstrdup(r->text);
    return out;
}

/* doc.FIELD == CONST (either way round), CONST a non-null scalar; or
 * doc.FIELD in [non-null scalars]. */
static bool as_cond(const node *n, query_t *q)
{
    if (n->t != N_CMP || (n->op != C_EQ && n->op != C_IN))
        return false;
    const node *p = n->a, *v = n->b;
    if (n->op == C_EQ && p->t == N_LIT) {
        p = n->b;
        v = n->a;
    }
    if (p->t != N_PATH || p->root != ROOT_DOC || !p->path[0] || v->t != N_LIT)
        return false;
    if (n->op == C_EQ && (json_is_null(v->lit) || json_is_array(v->lit) || json_is_object(v->lit)))
        return false;
    if (n->op == C_IN) {
        if (!json_is_array(v->lit) || json_array_size(v->lit) == 0)
            return false;
        for (size_t i = 0; i < json_array_size(v->lit); i++) {
            const json_t *e = json_array_get(v->lit, i);
            if (json_is_null(e) || json_is_array(e) || json_is_object(e))
                return false;
        }
    }
    if (q->nconds == QUERY_MAX_CONDS)
        return false;
    err_t e = {0};
    const char *op = n->op == C_EQ ? "eq" : "in";
    int rc = query_add_cond(q, p->path, strlen(p->path), op, 2, v->lit, &e);
    err_clear(&e);
    return rc == 0;
}

static int conds(const node *n, query_t *q, bool *exact)
{
    if (n->t == N_AND)
        return conds(n->a, q, exact) + conds(n->b, q, exact);
    if (as_cond(n, q))
        return 1;
    *exact = false;
    return 0;
}

int rule_residual_conds(const rule_t *residual, query_t *q, bool *exact)
{
    *exact = true;
    return conds(residual->root, q, exact);
}
