/*
 * functions.c: the studio app's server functions (API.md "App: studio").
 *
 *   assign_job  {job_id, user_id}   admin or staff: the user exists and is
 *                                   active, the job is open; it becomes
 *                                   assigned to the user.
 */
#include <string.h>

#include "../../src/api/fn.h"
#include "studio.h"

static int assign_job(fn_tx *t, const json_t *args, json_t **result)
{
    const actor_t *me = fn_actor(t);
    if (!actor_is_admin(me) && strcmp(me->role, "staff") != 0)
        return fn_fail(t, E_FORBIDDEN, NULL, "assign_job is for admins and staff");
    if (json_object_size(args) != 2)
        return fn_fail(t, E_INVALID, NULL, "the arguments are {job_id, user_id}");
    const char *jid = fn_arg_id(t, args, "job_id"), *uid = jid ? fn_arg_id(t, args, "user_id") : NULL;
    if (!jid || !uid)
        return -1;
    json_t *user = fn_get(t, "users", uid);
    if (!user)
        return fn_fail(t, E_NOT_FOUND, json_pack("{ss}", "user_id", uid), "no user %s", uid);
    const char *ustatus = json_string_value(json_object_get(user, "status"));
    bool active = !ustatus || strcmp(ustatus, "active") == 0;
    json_decref(user);
    if (!active)
        return fn_fail(t, E_INVALID,
                       json_pack("[{ssss}]", "field", "user_id", "reason", "the user is inactive"),
                       "%s is inactive", uid);
    json_t *job = fn_get(t, "jobs", jid);
    if (!job)
        return fn_fail(t, E_NOT_FOUND, json_pack("{ss}", "job_id", jid), "no job %s", jid);
    const char *status = json_string_value(json_object_get(job, "status"));
    int rc = 0;
    if (!status || strcmp(status, "open") != 0)
        rc = fn_fail(t, E_INVALID_TRANSITION,
                     json_pack("{ssss}", "from", status ? status : "", "to", "assigned"),
                     "job %s is %s, not open", jid, status ? status : "without a status");
    json_decref(job);
    if (rc)
        return rc;
    json_t *w = fn_write(t, W_PATCH, "jobs", jid,
                         json_pack("{ssss}", "status", "assigned", "assigned_to", uid));
    if (!w)
        return -1;
    *result = json_pack("{so}", "job", w);
    return 0;
}

const fn_def studio_functions[] = {
    {"assign_job", assign_job},
    {NULL, NULL},
};
