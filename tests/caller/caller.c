/* A module that calls other commands, as triggers, gears-style modules and any C
 * module may: layercache must work, and reply as it does to a client, when it runs
 * inside another module's RedisModule_Call.
 *
 *   CALLER.CALL   command [arg ...]  RedisModule_Call(ctx, command, "!Ev", ...):
 *                                    no ACL check, as modules call by default
 *   CALLER.CALLAS command [arg ...]  the same with "C": as the calling client's user
 *
 * Each replies with the called command's reply, errors included ("E"). */
#include "redismodule.h"

static int call(RedisModuleCtx *ctx, RedisModuleString **argv, int argc, const char *fmt) {
    if (argc < 2) return RedisModule_WrongArity(ctx);
    const char *command = RedisModule_StringPtrLen(argv[1], NULL);
    RedisModuleCallReply *reply = RedisModule_Call(ctx, command, fmt, argv + 2, (size_t)(argc - 2));
    if (reply == NULL) return RedisModule_ReplyWithError(ctx, "ERR caller: RedisModule_Call failed");
    RedisModule_ReplyWithCallReply(ctx, reply);
    RedisModule_FreeCallReply(reply);
    return REDISMODULE_OK;
}

static int Call(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    return call(ctx, argv, argc, "!Ev");
}

static int CallAs(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    return call(ctx, argv, argc, "!CEv");
}

int RedisModule_OnLoad(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    REDISMODULE_NOT_USED(argv);
    REDISMODULE_NOT_USED(argc);
    if (RedisModule_Init(ctx, "caller", 1, REDISMODULE_APIVER_1) == REDISMODULE_ERR) return REDISMODULE_ERR;
    if (RedisModule_CreateCommand(ctx, "caller.call", Call, "write", 0, 0, 0) == REDISMODULE_ERR) return REDISMODULE_ERR;
    if (RedisModule_CreateCommand(ctx, "caller.callas", CallAs, "write", 0, 0, 0) == REDISMODULE_ERR) return REDISMODULE_ERR;
    return REDISMODULE_OK;
}
