//! Builds the XS glue: xsubpp turns src/Websockets.xs into C, which is
//! compiled with perl's own flags and linked into the cdylib only (the
//! unit tests run without a perl).

use std::env;
use std::path::PathBuf;
use std::process::Command;

const XS: &str = "src/Websockets.xs";
const TYPEMAP: &str = "src/typemap";
const HEADER: &str = "src/ev_websockets.h";
const MODULE: &str = "lib/EV/Websockets.pm";

fn perl() -> String {
    env::var("PERL").unwrap_or_else(|_| "perl".into())
}

/// Run perl with `args`; its stdout, or a panic that says what failed.
fn run_perl(args: &[&str], what: &str) -> String {
    let out = Command::new(perl())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} for {what}: {e}", perl()));
    if !out.status.success() {
        panic!("{what} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8(out.stdout).expect("perl printed UTF-8")
}

fn main() {
    for path in [XS, TYPEMAP, HEADER, MODULE] {
        println!("cargo::rerun-if-changed={path}");
    }
    println!("cargo::rerun-if-env-changed=PERL");
    println!("cargo::rustc-check-cfg=cfg(perl_multiplicity)");
    // set by cargo fuzz
    println!("cargo::rustc-check-cfg=cfg(fuzzing)");

    let config = run_perl(
        &[
            "-MConfig",
            "-MEV::MakeMaker",
            "-e",
            "print join qq{\\n}, $Config{ccflags}, qq{$Config{archlibexp}/CORE}, \
             $EV::MakeMaker::installsitearch, $Config{usemultiplicity} ? 1 : 0",
        ],
        "reading perl's configuration (is Debian's libev-perl installed?)",
    );
    let mut lines = config.lines();
    let mut next = || lines.next().unwrap_or_default().to_string();
    let (ccflags, core_dir, ev_arch, multiplicity) = (next(), next(), next(), next() == "1");
    if multiplicity {
        println!("cargo::rustc-cfg=perl_multiplicity");
    }
    let version = run_perl(
        &[
            "-MExtUtils::MakeMaker",
            "-e",
            "print MM->parse_version($ARGV[0])",
            MODULE,
        ],
        "reading the module version",
    );

    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // xsubpp changes into the XS file's directory: give it absolute paths.
    let root =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let (xs, typemap) = (root.join(XS), root.join(TYPEMAP));
    let c_file = out_dir.join("Websockets.c");
    run_perl(
        &[
            "-MExtUtils::ParseXS=process_file",
            "-e",
            "process_file(filename => $ARGV[0], typemap => [$ARGV[1]], output => $ARGV[2], \
             prototypes => 0, linenumbers => 1)",
            xs.to_str().expect("UTF-8 path"),
            typemap.to_str().expect("UTF-8 path"),
            c_file.to_str().expect("UTF-8 OUT_DIR"),
        ],
        "xsubpp",
    );

    let mut build = cc::Build::new();
    build
        .file(&c_file)
        .include("src")
        .include(&core_dir)
        .include(format!("{ev_arch}/EV"))
        .include(&ev_arch)
        .define("VERSION", format!("\"{version}\"").as_str())
        .define("XS_VERSION", format!("\"{version}\"").as_str())
        .define("boot_EV__Websockets", "ev_websockets_xs_boot")
        .warnings(true)
        .extra_warnings(false);
    for flag in ccflags.split_whitespace() {
        build.flag(flag);
    }
    for object in build.compile_intermediates() {
        println!("cargo::rustc-cdylib-link-arg={}", object.display());
    }
}
