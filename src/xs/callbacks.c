/* Calling Perl from inside the loop: callbacks and warnings run under
 * G_EVAL, so that no die unwinds through EV's C frames. */

static void callbacks_copy(callbacks *dst, const callbacks *src)
{
    int i;
    for (i = 0; i < CB_COUNT; i++)
        dst->cb[i] = src->cb[i] ? SvREFCNT_inc_simple_NN(src->cb[i]) : NULL;
}

static void callbacks_free(pTHX_ callbacks *cbs)
{
    int i;
    for (i = 0; i < CB_COUNT; i++) {
        SV *cb = cbs->cb[i];
        cbs->cb[i] = NULL;
        SvREFCNT_dec(cb);
    }
}

/* Whether $@ holds something, told without running its overloading
 * (SvTRUE would call an exception object's bool, which may die). */
static int errsv_holds(pTHX)
{
    SV *e = ERRSV;
    if (SvROK(e))
        return 1;
    if (!SvOK(e))
        return 0;
    return SvPOK(e) ? SvCUR(e) > 0 : 1;
}

/* call_sv under G_EVAL with the nargs new SVs in args (taken over), so
 * that no die unwinds through the event loop's C frames.  The caller's $@
 * is left as it was (G_EVAL clears or sets it; it is copied only when it
 * holds something).  With want_result, returns a new copy of the scalar
 * result (or NULL after a die).  *died gets the exception, or NULL. */
static SV *call_caught(pTHX_ SV *cb, SV **args, int nargs, int want_result, SV **died)
{
    dSP;
    SV *result = NULL;
    SV *saved_error = errsv_holds(aTHX) ? newSVsv(ERRSV) : NULL;
    int i, count;

    *died = NULL;
    ENTER;
    SAVETMPS;
    SvREFCNT_inc_simple_void_NN(cb);  /* the callback may free its holder */
    SAVEFREESV(cb);

    PUSHMARK(SP);
    EXTEND(SP, nargs);
    for (i = 0; i < nargs; i++)
        PUSHs(sv_2mortal(args[i]));
    PUTBACK;

    count = call_sv(cb, (want_result ? G_SCALAR : G_VOID | G_DISCARD) | G_EVAL);

    SPAGAIN;
    if (errsv_holds(aTHX)) {
        *died = newSVsv(ERRSV);
        if (want_result && count)
            (void)POPs;
    } else if (want_result && count) {
        result = newSVsv(POPs);
    }
    PUTBACK;

    FREETMPS;
    LEAVE;

    if (saved_error) {
        sv_setsv(ERRSV, saved_error);
        SvREFCNT_dec(saved_error);
    } else if (errsv_holds(aTHX)) {
        sv_setpvs(ERRSV, "");
    }
    return result;
}

/* warn(text, detail) from inside the loop.  It goes through Perl
 * (EV::Websockets::_warn) under G_EVAL: a __WARN__ handler that dies, or a
 * detail whose stringification dies, is dropped, as EV drops a die in one
 * of its callbacks, instead of unwinding through the loop.  Takes over
 * both SVs. */
static void warn_caught(pTHX_ SV *text, SV *detail)
{
    SV *args[2], *died;
    CV *cv = get_cv("EV::Websockets::_warn", 0);
    args[0] = text;
    args[1] = detail;
    if (!cv) {   /* the module's Perl half is not loaded */
        SvREFCNT_dec(text);
        SvREFCNT_dec(detail);
        return;
    }
    call_caught(aTHX_ (SV *)cv, args, 2, 0, &died);
    SvREFCNT_dec(died);
}

/* Call a user callback: call_caught, with a die warned as
 * "EV::Websockets: exception in <what>: <the exception>". */
static SV *invoke(pTHX_ SV *cb, int which, SV **args, int nargs, int want_result)
{
    SV *died;
    SV *result = call_caught(aTHX_ cb, args, nargs, want_result, &died);
    if (died)
        warn_caught(aTHX_ newSVpvf("EV::Websockets: exception in %s: ", cb_what[which]), died);
    return result;
}
