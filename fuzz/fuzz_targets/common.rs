//! What the decoding targets share.

use mammo_serve::imaging::DecodeLimits;

/// The server's decoding bounds, smaller: a side of 4096 px and 64 MiB a decode keep each
/// execution quick while every check still runs.
pub fn limits() -> DecodeLimits {
    DecodeLimits {
        max_side: 4096,
        max_alloc: 64 << 20,
        any_modality: true,
        ..DecodeLimits::default()
    }
}

/// Lets a panic inside dicom-pixeldata's codecs (dicom-transfer-syntax-registry) unwind to
/// the `catch_unwind` that turns it into the image's error (`imaging::dicom::stored`), as it
/// does in the server; libFuzzer's hook would abort on it. Every other panic still aborts and
/// is a finding.
pub fn allow_caught_codec_panics() {
    let abort = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_codec = info
            .location()
            .is_some_and(|l| l.file().contains("dicom-transfer-syntax-registry"));
        if !in_codec {
            abort(info);
        }
    }));
}
