use multiproc::{Process, StartMethod};
use std::time::Duration;

multiproc::test_support!();

fn exit_with(code: i32) {
    std::process::exit(code);
}

fn panics(msg: String) {
    panic!("{msg}");
}

#[test]
fn exit_codes_follow_python() {
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        let p = Process::start_with(method, exit_with, 3).unwrap();
        assert!(p.join_timeout(Duration::from_secs(10)));
        assert_eq!(p.exitcode(), Some(3));
        let p = Process::start_with(method, panics, "boom".into()).unwrap();
        assert!(p.join_timeout(Duration::from_secs(10)));
        assert_eq!(p.exitcode(), Some(1));
        let p = Process::start_with(
            method,
            |_: ()| std::thread::sleep(Duration::from_secs(30)),
            (),
        )
        .unwrap();
        assert!(p.is_alive());
        p.kill().unwrap();
        assert!(p.join_timeout(Duration::from_secs(10)));
        assert_eq!(p.exitcode(), Some(-9));
    }
}
