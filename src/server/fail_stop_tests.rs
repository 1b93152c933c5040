//! A panic anywhere ends the process (`fail_stop_on_panic`): the test binary runs itself again
//! as a child that installs the hook and panics inside a task on a shard-like thread; the child
//! must die of `SIGABRT` after logging what happened, never go on.

use std::os::unix::process::ExitStatusExt as _;
use std::process::Command;

/// Set in the child's environment: the child does the panicking.
const CHILD: &str = "FLO_FAIL_STOP_CHILD";
const TEST: &str = "server::fail_stop_tests::a_panic_in_a_shard_task_aborts_the_process_after_logging_it";

fn child() -> ! {
    crate::logging::init("info", crate::config::LogFormat::Text);
    super::fail_stop_on_panic();
    let shard = std::thread::Builder::new()
        .name("flo-shard-1".into())
        .spawn(|| {
            let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .build()
                .expect("io_uring runtime");
            rt.block_on(async {
                let task = monoio::spawn(async {
                    let entry: Option<u64> = std::hint::black_box(None);
                    entry.expect("an entry that a decision promised");
                });
                task.await;
            });
        })
        .expect("spawn a thread");
    let _ = shard.join();
    // Reached only if the panic did not stop the process.
    println!("the process went on after the panic");
    std::process::exit(0);
}

#[test]
fn a_panic_in_a_shard_task_aborts_the_process_after_logging_it() {
    if std::env::var_os(CHILD).is_some() {
        child();
    }
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new(exe)
        .args(["--exact", TEST, "--nocapture", "--test-threads", "1"])
        .env(CHILD, "1")
        .output()
        .expect("run the child");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "the child ended with {:?}; stdout: {stdout}; stderr: {stderr}",
        out.status
    );
    assert!(!stdout.contains("went on"), "{stdout}");
    assert!(
        stderr.contains("a bug stopped the server") && stderr.contains("flo-shard-1"),
        "the log names what happened and where: {stderr}"
    );
    assert!(stderr.contains("an entry that a decision promised"), "{stderr}");
}
