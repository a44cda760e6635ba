//! `Range` and `Content-Range` headers: a satisfiable range always lies
//! inside the blob and is never empty; a Content-Range never runs backwards.
#![no_main]
use berth_core::range::{parse_content_range, parse_range, RangeReq};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u64, &str)| {
    let (size, header) = input;
    match parse_range(Some(header), size) {
        RangeReq::Full => panic!("a Range header never means the whole blob"),
        RangeReq::Partial(a, b) => assert!(a < b && b <= size, "{a}..{b} of {size}"),
        RangeReq::Unsatisfiable => {}
    }
    if let Some((a, b)) = parse_content_range(header) {
        assert!(a <= b);
    }
});
