//! What the decoding targets share.

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
