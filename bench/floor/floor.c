/* The C floor: the least a module can do through the Redis module API for the key work
 * of each layercache read, with no validation, no ACL check and no counters. `make
 * bench-instructions` measures it beside layercache in the same server, so the ratio
 * module / floor shows what layercache adds.
 *
 * Loaded as `loadmodule libfloor.so distribution|blob`, the key scheme of the
 * layercache it is measured against. Commands take layercache's arguments:
 *
 *   FLOOR.CONTAINS repo digest    distribution: RM_Call SISMEMBER of the repository set
 *                                 blob: OpenKey(digest) + HashGet(EXISTS repo:<repo>)
 *   FLOOR.LOOKUP repo digest      distribution: SISMEMBER, then OpenKey + HashGet of
 *                                 path, length; blob: one OpenKey + one HashGet of
 *                                 repo:<repo>, path, length
 *   FLOOR.META digest             OpenKey + HashGet of path, length
 *   FLOOR.STAT digest             OpenKey + HashGet of digest, size, mediatype
 *   FLOOR.REPOSTAT repo digest    distribution: SISMEMBER, the descriptor, then the
 *                                 repository hash's mediatype; blob: one OpenKey + one
 *                                 HashGet of repo:<repo>, digest, size, mediatype */
#include <string.h>
#include "redismodule.h"

static int blob_scheme;
static RedisModuleString *PATH, *LENGTH, *DIGEST, *SIZE, *MEDIATYPE;

/* prefix + a + infix + b, as a Redis string (the key or field names layercache builds). */
static RedisModuleString *name(RedisModuleCtx *ctx, const char *prefix, RedisModuleString *a, const char *infix,
                               RedisModuleString *b) {
    char buf[1024];
    size_t alen, blen = 0, plen = strlen(prefix), ilen = infix ? strlen(infix) : 0;
    const char *ap = RedisModule_StringPtrLen(a, &alen);
    const char *bp = b ? RedisModule_StringPtrLen(b, &blen) : NULL;
    if (plen + alen + ilen + blen > sizeof(buf)) return NULL;
    memcpy(buf, prefix, plen);
    memcpy(buf + plen, ap, alen);
    if (infix) memcpy(buf + plen + alen, infix, ilen);
    if (bp) memcpy(buf + plen + alen + ilen, bp, blen);
    return RedisModule_CreateString(ctx, buf, plen + alen + ilen + blen);
}

static RedisModuleString *blob_key(RedisModuleCtx *ctx, RedisModuleString *digest) {
    return blob_scheme ? NULL : name(ctx, "blobs::", digest, NULL, NULL);
}

static void free_all(RedisModuleCtx *ctx, RedisModuleString **s, int n) {
    for (int i = 0; i < n; i++)
        if (s[i]) RedisModule_FreeString(ctx, s[i]);
}

/* distribution: SISMEMBER repository::<repo>::blobs <digest> through RM_Call. */
static long long sismember(RedisModuleCtx *ctx, RedisModuleString *repo, RedisModuleString *digest) {
    RedisModuleString *set = name(ctx, "repository::", repo, "::blobs", NULL);
    RedisModuleCallReply *r = RedisModule_Call(ctx, "SISMEMBER", "ss", set, digest);
    long long held = r ? RedisModule_CallReplyInteger(r) : 0;
    if (r) RedisModule_FreeCallReply(r);
    RedisModule_FreeString(ctx, set);
    return held;
}

static void reply_number(RedisModuleCtx *ctx, RedisModuleString *s) {
    long long n = 0;
    RedisModule_StringToLongLong(s, &n);
    RedisModule_ReplyWithLongLong(ctx, n);
}

static int Contains(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (argc != 3) return RedisModule_WrongArity(ctx);
    if (!blob_scheme) return RedisModule_ReplyWithLongLong(ctx, sismember(ctx, argv[1], argv[2]));
    RedisModuleString *field = name(ctx, "repo:", argv[1], NULL, NULL);
    RedisModuleKey *key = RedisModule_OpenKey(ctx, argv[2], REDISMODULE_READ);
    int exists = 0;
    if (key) RedisModule_HashGet(key, REDISMODULE_HASH_EXISTS, field, &exists, NULL);
    RedisModule_CloseKey(key);
    RedisModule_FreeString(ctx, field);
    return RedisModule_ReplyWithLongLong(ctx, exists);
}

/* Replies [path, length] from the blob hash, or null. */
static int reply_meta(RedisModuleCtx *ctx, RedisModuleString *keyname, RedisModuleString *field) {
    RedisModuleString *v[3] = {NULL, NULL, NULL};
    RedisModuleKey *key = RedisModule_OpenKey(ctx, keyname, REDISMODULE_READ);
    if (key) {
        if (field)
            RedisModule_HashGet(key, REDISMODULE_HASH_NONE, field, &v[2], PATH, &v[0], LENGTH, &v[1], NULL);
        else
            RedisModule_HashGet(key, REDISMODULE_HASH_NONE, PATH, &v[0], LENGTH, &v[1], NULL);
    }
    RedisModule_CloseKey(key);
    if (v[0] && v[1] && (!field || v[2])) {
        RedisModule_ReplyWithArray(ctx, 2);
        RedisModule_ReplyWithString(ctx, v[0]);
        reply_number(ctx, v[1]);
    } else {
        RedisModule_ReplyWithNull(ctx);
    }
    free_all(ctx, v, 3);
    return REDISMODULE_OK;
}

static int Meta(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (argc != 2) return RedisModule_WrongArity(ctx);
    RedisModuleString *key = blob_key(ctx, argv[1]);
    reply_meta(ctx, key ? key : argv[1], NULL);
    if (key) RedisModule_FreeString(ctx, key);
    return REDISMODULE_OK;
}

static int Lookup(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (argc != 3) return RedisModule_WrongArity(ctx);
    if (blob_scheme) {
        RedisModuleString *field = name(ctx, "repo:", argv[1], NULL, NULL);
        reply_meta(ctx, argv[2], field);
        RedisModule_FreeString(ctx, field);
        return REDISMODULE_OK;
    }
    if (!sismember(ctx, argv[1], argv[2])) return RedisModule_ReplyWithNull(ctx);
    RedisModuleString *key = blob_key(ctx, argv[2]);
    reply_meta(ctx, key, NULL);
    RedisModule_FreeString(ctx, key);
    return REDISMODULE_OK;
}

/* Replies [digest, size, mediatype] from the blob hash (mediatype from `repo_mediatype`
 * when given and not empty), or null. `field`: blob scheme's repo:<repo>, required. */
static int reply_descriptor(RedisModuleCtx *ctx, RedisModuleString *keyname, RedisModuleString *field,
                            RedisModuleString *repo_mediatype) {
    RedisModuleString *v[4] = {NULL, NULL, NULL, NULL};
    RedisModuleKey *key = RedisModule_OpenKey(ctx, keyname, REDISMODULE_READ);
    if (key) {
        if (field)
            RedisModule_HashGet(key, REDISMODULE_HASH_NONE, field, &v[3], DIGEST, &v[0], SIZE, &v[1], MEDIATYPE, &v[2], NULL);
        else
            RedisModule_HashGet(key, REDISMODULE_HASH_NONE, DIGEST, &v[0], SIZE, &v[1], MEDIATYPE, &v[2], NULL);
    }
    RedisModule_CloseKey(key);
    size_t len = 0;
    if (field && v[3]) RedisModule_StringPtrLen(v[3], &len);
    if (v[0] && v[1] && (!field || len)) {
        RedisModuleString *mediatype = field ? v[3] : (repo_mediatype ? repo_mediatype : v[2]);
        RedisModule_ReplyWithArray(ctx, 3);
        RedisModule_ReplyWithString(ctx, v[0]);
        reply_number(ctx, v[1]);
        if (mediatype) RedisModule_ReplyWithString(ctx, mediatype); else RedisModule_ReplyWithStringBuffer(ctx, "", 0);
    } else {
        RedisModule_ReplyWithNull(ctx);
    }
    free_all(ctx, v, 4);
    return REDISMODULE_OK;
}

static int Stat(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (argc != 2) return RedisModule_WrongArity(ctx);
    RedisModuleString *key = blob_key(ctx, argv[1]);
    reply_descriptor(ctx, key ? key : argv[1], NULL, NULL);
    if (key) RedisModule_FreeString(ctx, key);
    return REDISMODULE_OK;
}

static int RepoStat(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (argc != 3) return RedisModule_WrongArity(ctx);
    if (blob_scheme) {
        RedisModuleString *field = name(ctx, "repo:", argv[1], NULL, NULL);
        reply_descriptor(ctx, argv[2], field, NULL);
        RedisModule_FreeString(ctx, field);
        return REDISMODULE_OK;
    }
    if (!sismember(ctx, argv[1], argv[2])) return RedisModule_ReplyWithNull(ctx);
    RedisModuleString *scoped = name(ctx, "repository::", argv[1], "::blobs::", argv[2]);
    RedisModuleString *mediatype = NULL;
    RedisModuleKey *key = RedisModule_OpenKey(ctx, scoped, REDISMODULE_READ);
    if (key) RedisModule_HashGet(key, REDISMODULE_HASH_NONE, MEDIATYPE, &mediatype, NULL);
    RedisModule_CloseKey(key);
    RedisModule_FreeString(ctx, scoped);
    if (!mediatype) return RedisModule_ReplyWithNull(ctx);
    size_t len;
    RedisModule_StringPtrLen(mediatype, &len);
    RedisModuleString *blob = blob_key(ctx, argv[2]);
    reply_descriptor(ctx, blob, NULL, len ? mediatype : NULL);
    RedisModule_FreeString(ctx, blob);
    RedisModule_FreeString(ctx, mediatype);
    return REDISMODULE_OK;
}

int RedisModule_OnLoad(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (RedisModule_Init(ctx, "floor", 1, REDISMODULE_APIVER_1) == REDISMODULE_ERR) return REDISMODULE_ERR;
    blob_scheme = argc > 0 && strcmp(RedisModule_StringPtrLen(argv[0], NULL), "blob") == 0;
    PATH = RedisModule_CreateString(NULL, "path", 4);
    LENGTH = RedisModule_CreateString(NULL, "length", 6);
    DIGEST = RedisModule_CreateString(NULL, "digest", 6);
    SIZE = RedisModule_CreateString(NULL, "size", 4);
    MEDIATYPE = RedisModule_CreateString(NULL, "mediatype", 9);
    struct { const char *name; RedisModuleCmdFunc fn; } commands[] = {
        {"floor.contains", Contains}, {"floor.lookup", Lookup}, {"floor.meta", Meta},
        {"floor.stat", Stat}, {"floor.repostat", RepoStat},
    };
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (RedisModule_CreateCommand(ctx, commands[i].name, commands[i].fn, "readonly fast", 0, 0, 0) == REDISMODULE_ERR)
            return REDISMODULE_ERR;
    return REDISMODULE_OK;
}
