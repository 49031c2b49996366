/* SPDX-License-Identifier: MIT */
/*
 * Participant side of a saga: answer a command through the outbox, in the
 * unit of work that applied it, so the reply exists exactly when the effect
 * does. The reply echoes ce-subject (the saga id) and ce-sagastep, which is
 * how the orchestrator correlates it and drops stale answers.
 */
#include <string.h>

#include "saga/saga_int.h"

sk_status sk_saga_reply(sk_tx *tx,
                        const sk_message *command,
                        const char *source,
                        const char *reply_type,
                        const json_t *data)
{
    sk_envelope env;
    sk_status st;

    if (tx == NULL || command == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_saga_reply: %s must not be NULL",
                       tx == NULL ? "tx" : "command");
    }
    if (source == NULL || source[0] == '\0' || strlen(source) > SK_ENVELOPE_MAX_ATTR) {
        return SK_FAIL(SK_EINVAL, "sk_saga_reply: source must be 1..%d bytes",
                       SK_ENVELOPE_MAX_ATTR);
    }
    if (reply_type == NULL || reply_type[0] == '\0' || strlen(reply_type) > SK_ENVELOPE_MAX_ATTR) {
        return SK_FAIL(SK_EINVAL, "sk_saga_reply: reply_type must be 1..%d bytes",
                       SK_ENVELOPE_MAX_ATTR);
    }
    if (!json_is_object(data)) {
        return SK_FAIL(SK_EINVAL, "sk_saga_reply: data must be a JSON object");
    }
    if (command->env.reply_to == NULL || command->env.reply_to[0] == '\0') {
        return SK_FAIL(SK_EPROTO, "sk_saga_reply: command %s has no ce-replyto",
                       command->env.type != NULL ? command->env.type : "?");
    }
    if (command->env.saga_step < 0) {
        return SK_FAIL(SK_EPROTO, "sk_saga_reply: command %s has no ce-sagastep",
                       command->env.type != NULL ? command->env.type : "?");
    }
    if (command->env.subject == NULL || command->env.subject[0] == '\0') {
        return SK_FAIL(SK_EPROTO, "sk_saga_reply: command %s has no ce-subject (the saga id)",
                       command->env.type != NULL ? command->env.type : "?");
    }
    sk_envelope_init(&env, reply_type, source, command->env.subject,
                     command->env.traceparent[0] != '\0' ? command->env.traceparent : NULL);
    env.saga_step = command->env.saga_step;
    st = sk_outbox_add(tx, command->env.reply_to, &env, data);
    if (st != SK_OK) {
        return SK_WRAP(st, "sk_saga_reply: %s to %s", reply_type, command->env.reply_to);
    }
    return SK_OK;
}
