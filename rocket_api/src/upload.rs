//! Request bodies: read under the route's limit, then images taken from multipart form data,
//! JSON with base64, or a tar / zip archive.

use std::io::Read;

use base64::Engine as _;
use rocket::data::{Data, Limits};
use rocket::http::ContentType;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::config::{ArchiveLimits, BodyLimit};
use crate::error::{ApiError, ApiResult, ProblemKind};

/// One uploaded image: its name (file name or index) and encoded bytes.
#[derive(Debug, Clone)]
pub struct NamedImage {
    /// The file name it was sent with, or `image-<i>`.
    pub name: String,
    /// The encoded image (PNG, JPEG, ...).
    pub bytes: Vec<u8>,
}

/// Reads the whole body, refusing one over the route's limit with a 413.
pub async fn read_body(data: Data<'_>, limits: &Limits, limit: BodyLimit) -> ApiResult<Vec<u8>> {
    let size = BodyLimit::of(limit, limits);
    let body = data.open(size).into_bytes().await.map_err(|e| ApiError::new(ProblemKind::BadRequest, e.to_string()))?;
    if !body.is_complete() {
        return Err(ApiError::new(
            ProblemKind::PayloadTooLarge,
            format!("the body is over this route's limit of {size} (Rocket limit `{}`)", limit.name()),
        ));
    }
    Ok(body.into_inner())
}

/// Parses a JSON body into `T`, with serde's message (line, column, field) as the detail.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let malformed = |e: serde_json::Error| ApiError::new(ProblemKind::MalformedJson, format!("invalid JSON body: {e}"));
    let mut value: serde_json::Value = serde_json::from_slice(body).map_err(malformed)?;
    integral_numbers(&mut value);
    serde_json::from_value(value).map_err(malformed)
}

/// Rewrites each number with no fractional part (`8.0`, `1e3`) as an integer, as JSON Schema
/// counts it one: the document's `integer` fields then take every value it allows.
pub fn integral_numbers(value: &mut serde_json::Value) {
    /// 2⁶⁴ and -2⁶³, exact as `f64`: the integers serde's `u64` and `i64` hold lie within.
    const U64_END: f64 = 18_446_744_073_709_551_616.0;
    const I64_START: f64 = -9_223_372_036_854_775_808.0;
    match value {
        serde_json::Value::Number(number) => {
            let Some(float) = number.as_f64().filter(|f| number.is_f64() && f.fract() == 0.0) else { return };
            if (0.0..U64_END).contains(&float) {
                *number = (float as u64).into();
            } else if (I64_START..0.0).contains(&float) {
                *number = (float as i64).into();
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// Which form the body is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json`.
    Json,
    /// `multipart/form-data` with this boundary.
    Multipart(String),
    /// `application/x-tar` (or `application/tar`).
    Tar,
    /// `application/zip`.
    Zip,
}

/// Classifies the content type among `accepted` kinds, or a 415 naming them.
pub fn body_kind(content_type: Option<&ContentType>, archives: bool) -> ApiResult<BodyKind> {
    let accepted = if archives {
        "application/json, multipart/form-data, application/x-tar or application/zip"
    } else {
        "application/json or multipart/form-data"
    };
    let refuse = |what: String| ApiError::new(ProblemKind::UnsupportedMediaType, format!("{what}: send {accepted}"));
    let Some(ct) = content_type else {
        return Err(refuse("the request has no Content-Type".to_owned()));
    };
    let kind = match (ct.top().as_str(), ct.sub().as_str()) {
        ("application", "json") => BodyKind::Json,
        ("multipart", "form-data") => {
            let boundary = ct
                .params()
                .find(|(k, _)| k.as_str().eq_ignore_ascii_case("boundary"))
                .map(|(_, v)| v.to_string())
                .ok_or_else(|| ApiError::new(ProblemKind::MalformedBody, "multipart body without a boundary"))?;
            BodyKind::Multipart(boundary)
        }
        ("application", "x-tar" | "tar") if archives => BodyKind::Tar,
        ("application", "zip" | "x-zip-compressed") if archives => BodyKind::Zip,
        _ => return Err(refuse(format!("content type `{ct}` is not accepted"))),
    };
    Ok(kind)
}

/// An image sent inline in a JSON body: `{"images": [{"name": ..., "data": <base64>}], ...}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct InlineImage {
    /// Its name (default `image-<i>`).
    pub name: Option<String>,
    /// The encoded image (PNG, JPEG, BMP, GIF, TIFF, WebP), base64.
    #[schema(content_encoding = "base64", min_length = 1)]
    pub data: String,
}

/// A multipart body of images, for the OpenAPI document: one file part per image (the part's
/// file name names the image); text parts are the route's other fields.
#[derive(Debug, ToSchema)]
pub struct MultipartImages {
    /// The images, one file part each.
    #[schema(value_type = Vec<String>, format = Binary, min_items = 1)]
    pub images: Vec<Vec<u8>>,
}

/// A multipart body of images and the features to extract from them (`POST /v1/features`).
#[derive(Debug, ToSchema)]
pub struct MultipartFeatures {
    /// The images, one file part each.
    #[schema(value_type = Vec<String>, format = Binary, min_items = 1)]
    pub images: Vec<Vec<u8>>,
    /// The `FeatureConfig` as JSON text (default RGB HOG of 64×64). A text part: whatever it
    /// holds is read as JSON, so no type is declared.
    #[schema(value_type = Value, required = false, content_media_type = "application/json")]
    pub features: Option<String>,
}

/// A multipart body of images and a dataset name (`POST /v1/datasets`).
#[derive(Debug, ToSchema)]
pub struct MultipartDataset {
    /// The images, one file part each.
    #[schema(value_type = Vec<String>, format = Binary, min_items = 1)]
    pub images: Vec<Vec<u8>>,
    /// A name for the dataset. A text part: whatever it holds is the name, so no type is declared.
    #[schema(value_type = Value, required = false)]
    pub name: Option<String>,
}

/// A tar or zip archive of images, for the OpenAPI document: every regular member not hidden
/// is an image, named by its path.
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Archive(pub Vec<u8>);

/// A parsed body: its images and, for JSON and multipart, the named non-file fields (JSON text).
#[derive(Debug, Default)]
pub struct Upload {
    /// The images, in the order sent.
    pub images: Vec<NamedImage>,
    /// Other fields: for JSON the whole document less `images`, for multipart each text field
    /// as a string (a route reading JSON from one parses it).
    pub fields: serde_json::Map<String, serde_json::Value>,
}

fn malformed(what: impl std::fmt::Display) -> ApiError {
    ApiError::new(ProblemKind::MalformedBody, what.to_string())
}

/// Parses a body of `kind` into images and fields, with the default [`ArchiveLimits`].
pub async fn parse_upload(kind: &BodyKind, body: Vec<u8>) -> ApiResult<Upload> {
    parse_upload_within(kind, body, &ArchiveLimits::default()).await
}

/// Parses a body of `kind` into images and fields; an archive may inflate to at most `archive`.
pub async fn parse_upload_within(kind: &BodyKind, body: Vec<u8>, archive: &ArchiveLimits) -> ApiResult<Upload> {
    let upload = match kind {
        BodyKind::Json => json_upload(&body)?,
        BodyKind::Multipart(boundary) => multipart_upload(boundary, body).await?,
        BodyKind::Tar => Upload { images: tar_images(&body, archive)?, ..Upload::default() },
        BodyKind::Zip => Upload { images: zip_images(&body, archive)?, ..Upload::default() },
    };
    if upload.images.is_empty() {
        return Err(ApiError::new(ProblemKind::InvalidInput, "the request holds no images"));
    }
    Ok(upload)
}

fn json_upload(body: &[u8]) -> ApiResult<Upload> {
    let mut doc: serde_json::Map<String, serde_json::Value> = parse_json(body)?;
    let images = doc.remove("images").ok_or_else(|| {
        ApiError::new(ProblemKind::MalformedJson, "the JSON body needs `images`: [{\"name\": ..., \"data\": <base64>}]")
    })?;
    let images: Vec<InlineImage> = serde_json::from_value(images)
        .map_err(|e| ApiError::new(ProblemKind::MalformedJson, format!("invalid `images`: {e}")))?;
    let images = images
        .into_iter()
        .enumerate()
        .map(|(i, image)| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(image.data.as_bytes())
                .map_err(|e| malformed(format!("images[{i}].data is not valid base64: {e}")))?;
            Ok(NamedImage { name: image.name.unwrap_or_else(|| format!("image-{i}")), bytes })
        })
        .collect::<ApiResult<_>>()?;
    Ok(Upload { images, fields: doc })
}

async fn multipart_upload(boundary: &str, body: Vec<u8>) -> ApiResult<Upload> {
    let stream = futures_once(body);
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut upload = Upload::default();
    while let Some(field) =
        multipart.next_field().await.map_err(|e| malformed(format!("invalid multipart body: {e}")))?
    {
        let file_name = field.file_name().map(str::to_owned);
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.map_err(|e| malformed(format!("invalid multipart body: {e}")))?;
        match file_name {
            Some(file_name) => upload.images.push(NamedImage { name: file_name, bytes: bytes.to_vec() }),
            None => {
                let text =
                    std::str::from_utf8(&bytes).map_err(|_| malformed(format!("field `{name}` is not UTF-8")))?;
                upload.fields.insert(name, serde_json::Value::String(text.to_owned()));
            }
        }
    }
    Ok(upload)
}

/// A stream of one chunk, as multer wants its input.
fn futures_once(body: Vec<u8>) -> impl rocket::futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    rocket::futures::stream::once(async move { Ok(body) })
}

/// Whether an archive member is an image to keep: not a directory, not hidden, not macOS metadata.
fn is_member_image(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    !name.is_empty() && !name.starts_with('.') && !path.starts_with("__MACOSX/")
}

/// What is left of an archive's inflation budget while its members are read.
struct Inflation<'a> {
    limits: &'a ArchiveLimits,
    total: u64,
}

impl Inflation<'_> {
    /// Reads one member whole, refusing it (413) once it or the archive so far inflates past the limits.
    fn read(&mut self, member: impl Read, name: &str) -> ApiResult<Vec<u8>> {
        let left = self.limits.max_total_bytes - self.total;
        let cap = self.limits.max_member_bytes.min(left);
        let mut bytes = Vec::new();
        member
            .take(cap + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| malformed(format!("invalid archive at `{name}`: {e}")))?;
        let size = bytes.len() as u64;
        if size > self.limits.max_member_bytes {
            return Err(ApiError::new(
                ProblemKind::PayloadTooLarge,
                format!("archive member `{name}` inflates past {} bytes", self.limits.max_member_bytes),
            ));
        }
        if size > left {
            return Err(ApiError::new(
                ProblemKind::PayloadTooLarge,
                format!("the archive inflates past {} bytes in all (at `{name}`)", self.limits.max_total_bytes),
            ));
        }
        self.total += size;
        Ok(bytes)
    }
}

// The body limit bounds the compressed size; `Inflation` bounds what it inflates to.
fn tar_images(body: &[u8], limits: &ArchiveLimits) -> ApiResult<Vec<NamedImage>> {
    let mut archive = tar::Archive::new(body);
    let mut inflation = Inflation { limits, total: 0 };
    let mut images = Vec::new();
    for entry in archive.entries().map_err(|e| malformed(format!("invalid tar archive: {e}")))? {
        let entry = entry.map_err(|e| malformed(format!("invalid tar archive: {e}")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(|e| malformed(format!("invalid tar member name: {e}")))?;
        let name = path.to_string_lossy().into_owned();
        if !is_member_image(&name) {
            continue;
        }
        let bytes = inflation.read(entry, &name)?;
        images.push(NamedImage { name, bytes });
    }
    Ok(images)
}

fn zip_images(body: &[u8], limits: &ArchiveLimits) -> ApiResult<Vec<NamedImage>> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(body)).map_err(|e| malformed(format!("invalid zip archive: {e}")))?;
    let mut inflation = Inflation { limits, total: 0 };
    let mut images = Vec::new();
    for i in 0..archive.len() {
        let file = archive.by_index(i).map_err(|e| malformed(format!("invalid zip archive: {e}")))?;
        let name = file.name().to_owned();
        if file.is_dir() || !is_member_image(&name) {
            continue;
        }
        let bytes = inflation.read(file, &name)?;
        images.push(NamedImage { name, bytes });
    }
    Ok(images)
}
