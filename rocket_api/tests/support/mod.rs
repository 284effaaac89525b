//! Test data: small labelled PNGs, multipart and archive bodies, and service settings.
#![allow(dead_code)] // each test binary uses part of this module

pub mod cluster;
pub mod server;

use std::io::Write;

use rand::{Rng, SeedableRng};

/// The admin and read keys the tests configure.
pub const ADMIN_KEY: &str = "admin-key-for-tests";
pub const READ_KEY: &str = "read-key-for-tests";

/// A `size × size` RGB PNG of class `class` (0: horizontal stripes, 1: vertical stripes,
/// 2: diagonal stripes) with noise seeded by `seed`: HOG tells the classes apart.
pub fn png(class: usize, seed: u64, size: u32) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let phase: u32 = rng.random_range(0..8);
    let img = image::RgbImage::from_fn(size, size, |x, y| {
        let t = match class % 3 {
            0 => y + phase,
            1 => x + phase,
            _ => x + y + phase,
        };
        let base: i32 = if (t / 4) % 2 == 0 { 40 } else { 210 };
        let v = (base + rng.random_range(-20..=20)).clamp(0, 255) as u8;
        image::Rgb([v, v.saturating_sub(10), v])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

/// `n` images cycling through the three classes, named `img-<i>.png`, with their classes.
pub fn labelled(n: usize, size: u32) -> Vec<(String, Vec<u8>, usize)> {
    (0..n).map(|i| (format!("img-{i}.png"), png(i % 3, i as u64, size), i % 3)).collect()
}

/// A multipart/form-data body of files and text fields, and its content type.
pub fn multipart(files: &[(String, Vec<u8>)], fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "ferroclusterTestBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in fields {
        write!(body, "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").unwrap();
    }
    for (name, bytes) in files {
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"images\"; filename=\"{name}\"\r\nContent-Type: image/png\r\n\r\n"
        )
        .unwrap();
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A tar archive of the files.
pub fn tar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, format!("set/{name}"), bytes.as_slice()).unwrap();
    }
    builder.into_inner().unwrap()
}

/// A zip archive of the files.
pub fn zip(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, bytes) in files {
        writer.start_file(name.as_str(), options).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// The JSON body of `{"images": [...]}` with base64 data, plus `extra` fields.
pub fn json_images(files: &[(String, Vec<u8>)], extra: serde_json::Value) -> String {
    use base64::Engine as _;
    let images: Vec<_> = files
        .iter()
        .map(|(name, bytes)| serde_json::json!({"name": name, "data": base64::engine::general_purpose::STANDARD.encode(bytes)}))
        .collect();
    let mut doc = serde_json::json!({ "images": images });
    if let serde_json::Value::Object(extra) = extra {
        doc.as_object_mut().unwrap().extend(extra);
    }
    doc.to_string()
}

/// The `api_keys` setting with one admin and one read key (the admin one given as SHA-256).
pub fn api_keys() -> serde_json::Value {
    use sha2::Digest;
    let admin: String = sha2::Sha256::digest(ADMIN_KEY.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    serde_json::json!([{"sha256": admin, "role": "admin"}, {"key": READ_KEY, "role": "read"}])
}
