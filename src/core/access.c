/*
 * access.c: see access.h.
 */
#include "access.h"

#include <string.h>

json_t *actor_auth(const actor_t *a)
{
    if (!a->id[0])
        return json_null();
    return json_pack("{ssssss}", "id", a->id, "role", a->role, "email", a->email);
}

bool actor_is_admin(const actor_t *a) { return a->system || strcmp(a->role, "admin") == 0; }

bool access_can_read(const actor_t *a, const json_t *auth, const char *col, const json_t *doc)
{
    if (actor_is_admin(a))
        return true;
    const col_spec *c = apps_col(col);
    const rule_t *r = c ? c->rules[ACT_READ] : NULL;
    return r && doc && rule_eval(r, auth, doc, NULL);
}

access_scope access_read_scope(const actor_t *a, const char *col, query_t *q, rule_t **post)
{
    *post = NULL;
    if (actor_is_admin(a))
        return ACCESS_ALL;
    const col_spec *c = apps_col(col);
    const rule_t *r = c ? c->rules[ACT_READ] : NULL;
    if (!r)
        return ACCESS_NONE;
    json_t *auth = actor_auth(a);
    bool constant;
    rule_t *residual = rule_partial(r, auth, &constant);
    json_decref(auth);
    if (!residual)
        return constant ? ACCESS_ALL : ACCESS_NONE;
    bool exact = false;
    if (q)
        rule_residual_conds(residual, q, &exact);
    if (exact)
        rule_free(residual);
    else
        *post = residual;
    return ACCESS_SOME;
}

bool access_change_visible(const actor_t *a, const json_t *auth, change_t *ch)
{
    if (actor_is_admin(a))
        return true;
    const col_spec *c = apps_col(ch->col);
    if (!c || !c->rules[ACT_READ])
        return false;
    const json_t *doc, *prev;
    change_docs(ch, &doc, &prev);
    return access_can_read(a, auth, ch->col, ch->op == CH_DELETE ? prev : doc);
}
