/* The options of new, connect, listen and adopt: each value converted once
 * by the shape the core's table gives it. */

/* ---- options ----------------------------------------------------------- */

/* One call's options.  Callbacks, and the options that are Perl objects
 * (loop, fh), stay here; every other option belongs to the core's table
 * (src/options/mod.rs), which says its shape and checks its value. */
typedef struct {
    ews_options *core;
    callbacks cbs;            /* borrowed from the mortal option values */
    SV *object;               /* `loop` (new) or `fh` (adopt): NULL if absent */
    SV *pubsub;               /* new's `pubsub` hash: NULL if absent */
} call_opts;

static void options_free(pTHX_ void *core)
{
    ews_options_free((ews_options *)core);
}

/* A name, or an array ref of names, as a list for the core; the list and
 * copies of the names live until the end of the XS call. */
static ews_header *name_array(pTHX_ SV *value, const char *option, size_t *count)
{
    AV *av = SvROK(value) && SvTYPE(SvRV(value)) == SVt_PVAV ? (AV *)SvRV(value) : NULL;
    SSize_t i, n = av ? av_top_index(av) + 1 : 1;
    ews_header *list;

    if (!av && SvROK(value))
        croak("%s must be a name or an array reference of names", option);
    Newxz(list, n ? n : 1, ews_header);
    SAVEFREEPV(list);
    for (i = 0; i < n; i++) {
        SV **elem = av ? av_fetch(av, i, 0) : &value;
        /* a copy: another element's magic cannot free its string */
        SV *name = elem ? sv_mortalcopy(*elem) : NULL;
        STRLEN len;
        if (!name || !SvOK(name) || (SvROK(name) && !SvAMAGIC(name)))
            croak("%s must be a name or an array reference of names", option);
        list[i].name = SvPV(name, len);
        list[i].name_len = len;
    }
    *count = n;
    return list;
}

/* Convert one option's value by the shape the core asks for, and set it. */
static void opt_set(pTHX_ ews_options *core, int index, int shape, const char *key, SV *value)
{
    ews_value v = { 0 };
    ews_error err;

    if (!SvOK(value)) {
        v.undef = 1;
    } else {
        switch (shape) {
        case EWS_SHAPE_NUMBER:
            /* a string that does not look like a number is not one */
            v.is_number = !(SvPOK(value) && !SvROK(value) && !looks_like_number(value));
            v.number = v.is_number ? SvNV(value) : 0;
            break;
        case EWS_SHAPE_TEXT: {
            STRLEN len;
            v.text = SvPV(value, len);
            v.len = len;
            break;
        }
        case EWS_SHAPE_BOOL:
            v.truth = SvTRUE(value);
            break;
        case EWS_SHAPE_NAMES:
            v.items = name_array(aTHX_ value, key, &v.n_items);
            break;
        case EWS_SHAPE_HEADERS:
            if (!(SvROK(value) && SvTYPE(SvRV(value)) == SVt_PVHV))
                croak("%s must be a hash reference", key);
            v.items = header_array(aTHX_ value, &v.n_items);
            break;
        case EWS_SHAPE_CHOICE:
            /* a hash ref: its pairs (text stays NULL); else (an
             * overloaded object too) a string and its truth */
            if (SvROK(value) && !SvAMAGIC(value) && SvTYPE(SvRV(value)) == SVt_PVHV) {
                v.items = header_array(aTHX_ value, &v.n_items);
            } else {
                STRLEN len;
                v.truth = SvTRUE(value);
                v.text = SvPV(value, len);
                v.len = len;
            }
            break;
        }
    }
    if (ews_options_set(core, index, &v, &err))
        croak("%s", err.msg);
}

/* key => value pairs of a call (an EWS_CALL_*) into *out.  `object`
 * names the call's Perl object option, if it has one; callbacks are
 * taken by every call but new.  Later duplicates win; unknown keys warn.
 * Every value is converted here, once, and converting may run Perl
 * (overloading, ties): callers look at the context only afterwards. */
static void parse_opts(pTHX_ SV **args, I32 n, int call, const char *object, call_opts *out)
{
    SV **own;
    I32 i;

    Zero(out, 1, call_opts);
    out->core = ews_options_new(call);
    SAVEDESTRUCTOR_X(options_free, out->core);
    if (n % 2)
        croak("odd number of options: key '%" SVf "' has no value", SVfARG(args[n - 1]));
    if (!n)
        return;
    /* Own every argument before any Perl code runs (a key's overloading,
     * a value's tie): that code may grow the stack under args, or free
     * the other arguments. */
    Newx(own, n, SV *);
    SAVEFREEPV(own);
    for (i = 0; i < n; i++)
        own[i] = sv_2mortal(SvREFCNT_inc_simple_NN(args[i]));
    for (i = 0; i < n; i += 2) {
        STRLEN key_len;
        const char *key = SvPV(own[i], key_len);
        SV *value = sv_mortalcopy(own[i + 1]);   /* runs get magic once */
        int j, shape, index;

        for (j = 0; call != EWS_CALL_NEW && j < CB_COUNT; j++)
            if (strEQ(key, cb_name[j]))
                break;
        if (call != EWS_CALL_NEW && j < CB_COUNT) {
            if (SvOK(value) && !(SvROK(value) && SvTYPE(SvRV(value)) == SVt_PVCV))
                croak("%s must be a code reference", key);
            out->cbs.cb[j] = SvOK(value) ? SvRV(value) : NULL;
        } else if (object && strEQ(key, object)) {
            out->object = SvOK(value) ? value : NULL;
        } else if (call == EWS_CALL_NEW && strEQ(key, "pubsub")) {
            out->pubsub = SvOK(value) ? value : NULL;
        } else if ((index = ews_options_find(out->core, key, key_len, &shape)) >= 0) {
            opt_set(aTHX_ out->core, index, shape, key, value);
        } else {
            warn("EV::Websockets: unknown option '%s'", key);
        }
    }
}

/* new's `pubsub` hash: its callbacks into cbs (borrowed from mortal
 * copies), its other pairs into a list for the core, which checks them
 * (a value that is not a string has a NULL value).  The hash is copied
 * first: a tied value's fetch cannot change what is iterated. */
static ews_header *pubsub_pairs(pTHX_ SV *value, SV **cbs, size_t *count)
{
    static const char *const names[PUBSUB_CBS] = { "on_connect", "on_error" };
    ews_header *list;
    HV *hv;
    HE *he;
    size_t n = 0;

    if (!(SvROK(value) && !SvAMAGIC(value) && SvTYPE(SvRV(value)) == SVt_PVHV))
        croak("pubsub must be a hash reference");
    hv = (HV *)sv_2mortal((SV *)newHVhv((HV *)SvRV(value)));
    Newxz(list, HvUSEDKEYS(hv) + 1, ews_header);
    SAVEFREEPV(list);
    hv_iterinit(hv);
    while ((he = hv_iternext(hv))) {
        I32 key_len;
        const char *key = hv_iterkey(he, &key_len);
        SV *v = sv_mortalcopy(hv_iterval(hv, he));
        int i;
        for (i = 0; i < PUBSUB_CBS && strcmp(key, names[i]); i++)
            ;
        if (i < PUBSUB_CBS) {
            if (SvOK(v) && !(SvROK(v) && SvTYPE(SvRV(v)) == SVt_PVCV))
                croak("pubsub: %s must be a code reference", key);
            cbs[i] = SvOK(v) ? SvRV(v) : NULL;
            continue;
        }
        list[n].name = key;
        list[n].name_len = key_len;
        if (SvOK(v) && (!SvROK(v) || SvAMAGIC(v))) {
            STRLEN len;
            list[n].value = SvPV(v, len);
            list[n].value_len = len;
        }
        n++;
    }
    *count = n;
    return list;
}

/* The checks that look at several options: croaks if one fails. */
static void opts_check(pTHX_ const call_opts *opts)
{
    ews_error err;
    if (ews_options_check(opts->core, &err))
        croak("%s", err.msg);
}

/* ---- shutdown's options ------------------------------------------------ */

#define SHUTDOWN_CODE    1001
#define SHUTDOWN_TIMEOUT 5.0
#define MAX_SECONDS      1e9   /* as the core's numeric options */

typedef struct {
    NV code;                  /* as given: checked as close() checks it */
    const char *reason;       /* in a mortal copy: valid for the XS call */
    STRLEN reason_len;
    NV timeout;
    SV *cb;                   /* borrowed from the mortal option value */
} shutdown_opts;

/* shutdown's key => value pairs, each converted once (which may run Perl:
 * the caller looks at the context afterwards), then checked.  Unknown keys
 * warn, later duplicates win, as in parse_opts. */
static void parse_shutdown_opts(pTHX_ SV **args, I32 n, shutdown_opts *out)
{
    SV **own;
    I32 i;
    ews_error err;

    out->code = SHUTDOWN_CODE;
    out->reason = "";
    out->reason_len = 0;
    out->timeout = SHUTDOWN_TIMEOUT;
    out->cb = NULL;
    if (n % 2)
        croak("odd number of options: key '%" SVf "' has no value", SVfARG(args[n - 1]));
    Newx(own, n ? n : 1, SV *);
    SAVEFREEPV(own);
    for (i = 0; i < n; i++)
        own[i] = sv_2mortal(SvREFCNT_inc_simple_NN(args[i]));
    for (i = 0; i < n; i += 2) {
        const char *key = SvPV_nolen(own[i]);
        SV *value = sv_mortalcopy(own[i + 1]);   /* runs get magic once */

        if (strEQ(key, "code")) {
            out->code = SvOK(value) ? SvNV(value) : SHUTDOWN_CODE;
        } else if (strEQ(key, "reason")) {
            out->reason = SvOK(value) ? SvPV(value, out->reason_len) : "";
            if (!SvOK(value))
                out->reason_len = 0;
        } else if (strEQ(key, "timeout")) {
            NV t;
            if (!SvOK(value)) {
                out->timeout = SHUTDOWN_TIMEOUT;
                continue;
            }
            t = SvPOK(value) && !SvROK(value) && !looks_like_number(value) ? -1 : SvNV(value);
            if (!(t >= 0 && t <= MAX_SECONDS))   /* NaN too */
                croak("timeout must be a number of seconds from 0 to 1000000000");
            out->timeout = t;
        } else if (strEQ(key, "cb")) {
            if (SvOK(value) && !(SvROK(value) && SvTYPE(SvRV(value)) == SVt_PVCV))
                croak("cb must be a code reference");
            out->cb = SvOK(value) ? SvRV(value) : NULL;
        } else {
            warn("EV::Websockets: unknown option '%s'", key);
        }
    }
    /* close()'s checks of the code and reason, by the core */
    if (ews_conn_close(NULL, out->code, out->reason, out->reason_len, &err))
        croak("shutdown: %s", strncmp(err.msg, "close: ", 7) ? err.msg : err.msg + 7);
}
