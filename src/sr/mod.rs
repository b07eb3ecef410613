//! Results as DICOM Structured Reports: one Comprehensive SR per study, its content TID 1500
//! "Measurement Report" with a TID 1501 measurement group per image and one per breast
//! (docs/dicom-sr.md says what it holds and why this template and not Mammography CAD SR's).
//! The study's and patient's attributes are copied from the sources ([`Source`]); UIDs are
//! derived from the sources and the model ([`uid`]), so the same study and model give the same
//! SR UIDs.

mod codes;
mod content;
mod source;
pub mod uid;

pub use source::Source;

use crate::imaging::{DicomInfo, Laterality};
use crate::model::exam::{self, BreastSummary, View};
use crate::model::{Density, Malignancy, NOTICE};
use crate::pipeline::{ModelInfo, Reading};
use chrono::{DateTime, Utc};
use codes::*;
use content::{put_root, reference, sequence, string, Code, Item, Relationship, Value};
use dicom_core::VR;
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use Relationship::{Contains, HasAcqContext, HasConceptMod, HasObsContext};

/// Comprehensive SR Storage.
pub const COMPREHENSIVE_SR: &str = "1.2.840.10008.5.1.4.1.1.88.33";

/// One analysed image: what the SR references and copies, and what the model read.
pub struct Analysed<'a> {
    pub source: &'a Source,
    pub reading: &'a Reading,
}

/// An SR instance, as DICOM Part 10 bytes, with its SOP Instance UID.
#[derive(Debug, Clone)]
pub struct Document {
    pub sop_instance_uid: String,
    pub bytes: Vec<u8>,
}

/// Why no SR could be made.
#[derive(Debug, thiserror::Error)]
pub enum SrError {
    #[error("an SR reports on DICOM images of one study; {0}")]
    Sources(String),
    #[error("the SR could not be encoded: {0}")]
    Encoding(String),
}

/// The SR of `images` (one study's DICOM images, in the order received), read by `model`,
/// made at `created`.
pub fn report(
    images: &[Analysed],
    model: &ModelInfo,
    created: DateTime<Utc>,
) -> Result<Document, SrError> {
    let infos = dicom_infos(images)?;
    let study = infos[0].study_instance_uid.clone();
    let ids = Identity::new(&study, images, model);
    let mut object = InMemDicomObject::new_empty();
    images[0].source.copy_into(&mut object);
    put_series_and_equipment(&mut object, &ids, model);
    put_document_general(&mut object, &study, images, &infos, created);
    put_root(
        &mut object,
        MEASUREMENT_REPORT,
        "1500",
        &content(images, &infos, model, &ids),
    );
    let file = object
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .implementation_class_uid(uid::derived("mammo-serve/implementation"))
                .implementation_version_name("MAMMO_SERVE"),
        )
        .map_err(|e| SrError::Encoding(e.to_string()))?;
    let mut bytes = Vec::new();
    file.write_all(&mut bytes)
        .map_err(|e| SrError::Encoding(e.to_string()))?;
    Ok(Document {
        sop_instance_uid: ids.instance,
        bytes,
    })
}

/// The images' DICOM identifiers; refuses none, a non-DICOM image, or more than one study.
fn dicom_infos<'a>(images: &[Analysed<'a>]) -> Result<Vec<&'a DicomInfo>, SrError> {
    let infos = images
        .iter()
        .map(|a| a.reading.dicom.as_ref())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| SrError::Sources("an image was not DICOM".into()))?;
    let first = infos
        .first()
        .ok_or_else(|| SrError::Sources("there is no image".into()))?;
    if infos
        .iter()
        .any(|i| i.study_instance_uid != first.study_instance_uid)
    {
        return Err(SrError::Sources(
            "the images belong to several studies".into(),
        ));
    }
    Ok(infos)
}

/// The UIDs an SR derives: the same study, images and model give the same ones.
struct Identity {
    series: String,
    instance: String,
    device: String,
}

impl Identity {
    fn new(study: &str, images: &[Analysed], model: &ModelInfo) -> Identity {
        let mut sources: Vec<&str> = images
            .iter()
            .map(|a| a.source.sop_instance_uid.as_str())
            .collect();
        sources.sort_unstable();
        let m = &model.metadata;
        Identity {
            series: uid::derived(&format!("mammo-sr/series/v1|{study}|{}", model.sha256)),
            instance: uid::derived(&format!(
                "mammo-sr/instance/v1|{study}|{}|{}|{}",
                sources.join(","),
                model.sha256,
                m.malignancy_threshold
            )),
            device: uid::derived(&format!("mammo-sr/device/v1|{}", model.sha256)),
        }
    }
}

/// SR Document Series, General Equipment and SOP Common.
fn put_series_and_equipment(object: &mut InMemDicomObject, ids: &Identity, model: &ModelInfo) {
    let software = format!(
        "mammo-serve {}\\{} {}",
        env!("CARGO_PKG_VERSION"),
        model.name,
        model.metadata.version
    );
    let scheme = InMemDicomObject::from_element_iter([
        string(tags::CODING_SCHEME_DESIGNATOR, VR::SH, PRIVATE_SCHEME),
        string(
            tags::CODING_SCHEME_NAME,
            VR::ST,
            "mammo-serve model outputs",
        ),
        string(
            tags::CODING_SCHEME_RESPONSIBLE_ORGANIZATION,
            VR::ST,
            "mammo-serve",
        ),
    ]);
    for element in [
        string(tags::SOP_CLASS_UID, VR::UI, COMPREHENSIVE_SR),
        string(tags::SOP_INSTANCE_UID, VR::UI, &ids.instance),
        string(tags::MODALITY, VR::CS, "SR"),
        string(tags::SERIES_INSTANCE_UID, VR::UI, &ids.series),
        string(tags::SERIES_NUMBER, VR::IS, "9901"),
        string(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            "AI decision support (mammo-serve)",
        ),
        sequence(
            tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE,
            Vec::new(),
        ),
        string(tags::MANUFACTURER, VR::LO, "mammo-serve"),
        string(tags::MANUFACTURER_MODEL_NAME, VR::LO, &model.name),
        string(tags::SOFTWARE_VERSIONS, VR::LO, &software),
        sequence(tags::CODING_SCHEME_IDENTIFICATION_SEQUENCE, vec![scheme]),
    ] {
        object.put(element);
    }
}

/// SR Document General: flags, content date and time, and every source image as current
/// evidence (by series).
fn put_document_general(
    object: &mut InMemDicomObject,
    study: &str,
    images: &[Analysed],
    infos: &[&DicomInfo],
    created: DateTime<Utc>,
) {
    let mut series: Vec<(&str, Vec<InMemDicomObject>)> = Vec::new();
    for (image, info) in images.iter().zip(infos) {
        let item = reference(&image.source.sop_class_uid, &image.source.sop_instance_uid);
        match series
            .iter_mut()
            .find(|(uid, _)| *uid == info.series_instance_uid)
        {
            Some((_, items)) => items.push(item),
            None => series.push((&info.series_instance_uid, vec![item])),
        }
    }
    let series = series
        .into_iter()
        .map(|(uid, items)| {
            InMemDicomObject::from_element_iter([
                string(tags::SERIES_INSTANCE_UID, VR::UI, uid),
                sequence(tags::REFERENCED_SOP_SEQUENCE, items),
            ])
        })
        .collect();
    let evidence = InMemDicomObject::from_element_iter([
        string(tags::STUDY_INSTANCE_UID, VR::UI, study),
        sequence(tags::REFERENCED_SERIES_SEQUENCE, series),
    ]);
    let date = created.format("%Y%m%d").to_string();
    let time = created.format("%H%M%S").to_string();
    for element in [
        string(tags::INSTANCE_NUMBER, VR::IS, "1"),
        string(tags::COMPLETION_FLAG, VR::CS, "COMPLETE"),
        string(tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED"),
        string(tags::CONTENT_DATE, VR::DA, &date),
        string(tags::CONTENT_TIME, VR::TM, &time),
        string(tags::INSTANCE_CREATION_DATE, VR::DA, &date),
        string(tags::INSTANCE_CREATION_TIME, VR::TM, &time),
        sequence(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, Vec::new()),
        sequence(
            tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
            vec![evidence],
        ),
    ] {
        object.put(element);
    }
}

/// The root container's children (TID 1500).
fn content(
    images: &[Analysed],
    infos: &[&DicomInfo],
    model: &ModelInfo,
    ids: &Identity,
) -> Vec<Item> {
    let views: Vec<View> = images
        .iter()
        .zip(infos)
        .map(|(image, info)| View {
            id: &image.source.sop_instance_uid,
            dicom: info,
            prediction: &image.reading.prediction,
        })
        .collect();
    let summary = exam::summarise(&views)
        .pop()
        .expect("one study gives one summary");
    let mut groups: Vec<Item> = images
        .iter()
        .zip(&views)
        .map(|(image, view)| image_group(image.source, view, model))
        .collect();
    groups.extend(
        summary
            .breasts
            .iter()
            .filter(|b| b.laterality.is_some())
            .map(|b| breast_group(b, &summary.study_instance_uid, images, model)),
    );
    let library = images
        .iter()
        .zip(infos)
        .map(|(image, info)| {
            let laterality = info.laterality.map(|side| {
                vec![Item::new(
                    HasAcqContext,
                    IMAGE_LATERALITY,
                    Value::Code(codes::side(side)),
                )]
            });
            Item::image(
                None,
                &image.source.sop_class_uid,
                &image.source.sop_instance_uid,
            )
            .with_children(laterality.unwrap_or_default())
        })
        .collect();
    vec![
        Item::new(HasConceptMod, LANGUAGE, Value::Code(ENGLISH_US)),
        Item::new(HasObsContext, OBSERVER_TYPE, Value::Code(DEVICE)),
        Item::new(
            HasObsContext,
            DEVICE_OBSERVER_UID,
            Value::UidRef(ids.device.clone()),
        ),
        Item::new(HasObsContext, DEVICE_OBSERVER_NAME, text("mammo-serve")),
        Item::new(
            HasObsContext,
            DEVICE_OBSERVER_MANUFACTURER,
            text("mammo-serve"),
        ),
        Item::new(HasObsContext, DEVICE_OBSERVER_MODEL_NAME, text(&model.name)),
        Item::new(
            HasConceptMod,
            PROCEDURE_REPORTED,
            Value::Code(procedure(infos)),
        ),
        Item::container(
            Contains,
            IMAGE_LIBRARY,
            vec![Item::container(Contains, IMAGE_LIBRARY_GROUP, library)],
        ),
        Item::container(Contains, IMAGING_MEASUREMENTS, groups),
        Item::container(
            Contains,
            QUALITATIVE_EVALUATIONS,
            vec![Item::new(Contains, COMMENT, text(NOTICE))],
        ),
    ]
}

/// The procedure reported: a bilateral mammogram unless every image is of one breast.
fn procedure(infos: &[&DicomInfo]) -> Code {
    let left = infos.iter().any(|i| i.laterality == Some(Laterality::Left));
    let right = infos
        .iter()
        .any(|i| i.laterality == Some(Laterality::Right));
    match (left, right) {
        (true, false) => LEFT_MAMMOGRAM,
        (false, true) => RIGHT_MAMMOGRAM,
        (false, false) => UNILATERAL_MAMMOGRAM,
        (true, true) => BILATERAL_MAMMOGRAM,
    }
}

/// One image's measurement group: its probability of cancer, breast composition, the call at
/// the model's threshold and whether it was assessed (an image not assessed gets no values).
fn image_group(source: &Source, view: &View, model: &ModelInfo) -> Item {
    let p = view.prediction;
    let position = view
        .dicom
        .view_position
        .as_ref()
        .map_or("view not given".to_string(), |v| v.code().to_string());
    let side = view
        .dicom
        .laterality
        .map_or("breast not given", |l| l.code());
    let tracking = format!("image {side} {position} {}", source.sop_instance_uid);
    let track_uid = uid::derived(&format!(
        "mammo-sr/track/image/v1|{}|{}",
        source.sop_instance_uid, model.sha256
    ));
    let mut items = group_head(tracking, track_uid, view.dicom.laterality, model);
    items.push(Item::image(
        Some(SOURCE_OF_MEASUREMENT),
        &source.sop_class_uid,
        &source.sop_instance_uid,
    ));
    let assessed = p.assessment.is_assessed();
    items.extend(findings(
        assessed.then_some((p.malignancy, p.density)),
        assessed,
        p.assessment.reason.clone(),
    ));
    Item::container(Contains, MEASUREMENT_GROUP, items)
}

/// One breast's group over its views (the exam rules of `model::exam`): the highest
/// probability of its assessed views, their averaged composition, and its images.
fn breast_group(
    breast: &BreastSummary,
    study: &str,
    images: &[Analysed],
    model: &ModelInfo,
) -> Item {
    let side = breast.laterality.map_or("?", |l| l.code());
    let track_uid = uid::derived(&format!(
        "mammo-sr/track/breast/v1|{study}|{side}|{}",
        model.sha256
    ));
    let mut items = group_head(
        format!("breast {side}"),
        track_uid,
        breast.laterality,
        model,
    );
    for view in &breast.views {
        if let Some(image) = images
            .iter()
            .find(|a| a.source.sop_instance_uid == view.sop_instance_uid)
        {
            items.push(Item::image(
                Some(SOURCE_OF_MEASUREMENT),
                &image.source.sop_class_uid,
                &image.source.sop_instance_uid,
            ));
        }
    }
    let values = breast
        .malignancy
        .as_ref()
        .zip(breast.density.as_ref())
        .map(|(m, d)| (m.malignancy, d.density));
    let excluded = (!breast.not_assessable.is_empty()).then(|| {
        let uids: Vec<&str> = breast
            .not_assessable
            .iter()
            .map(|v| v.sop_instance_uid.as_str())
            .collect();
        format!(
            "images not assessable, left out of this breast's result: {}",
            uids.join(", ")
        )
    });
    items.extend(findings(values, values.is_some(), excluded));
    Item::container(Contains, MEASUREMENT_GROUP, items)
}

/// What every group starts with: its tracking identifiers, the breast it is about and the
/// algorithm that made it (TID 4019).
fn group_head(
    tracking: String,
    track_uid: String,
    laterality: Option<Laterality>,
    model: &ModelInfo,
) -> Vec<Item> {
    let m = &model.metadata;
    let site = Item::new(HasConceptMod, FINDING_SITE, Value::Code(BREAST)).with_children(
        laterality
            .map(|side| {
                vec![Item::new(
                    HasConceptMod,
                    LATERALITY,
                    Value::Code(codes::side(side)),
                )]
            })
            .unwrap_or_default(),
    );
    let mut parameters = vec![
        format!("sha256={}", model.sha256),
        format!("malignancy_threshold={}", m.malignancy_threshold),
    ];
    if let Some(ood) = &m.ood {
        parameters.push(format!(
            "ood_method={}; ood_threshold={}",
            ood.method, ood.threshold
        ));
    }
    let mut items = vec![
        Item::new(HasObsContext, TRACKING_IDENTIFIER, Value::Text(tracking)),
        Item::new(HasObsContext, TRACKING_UID, Value::UidRef(track_uid)),
        site,
        Item::new(HasConceptMod, ALGORITHM_NAME, text(&model.name)),
        Item::new(HasConceptMod, ALGORITHM_VERSION, text(&m.version)),
    ];
    items.extend(
        parameters
            .iter()
            .map(|p| Item::new(HasConceptMod, ALGORITHM_PARAMETERS, text(p))),
    );
    items
}

/// The probability of cancer, the composition and the call when assessed; the assessment
/// status and a comment always. A group not assessed has no value at all: an empty measurement
/// qualified as indeterminate (PS3.3 C.18.1) would say the same, but highdicom 0.28 cannot
/// read one.
fn findings(
    values: Option<(Malignancy, Density)>,
    assessed: bool,
    comment: Option<String>,
) -> Vec<Item> {
    let mut items = Vec::new();
    if let Some((malignancy, density)) = values {
        let percent = f64::from(malignancy.probability) * 100.0;
        items.push(Item::new(
            Contains,
            PROBABILITY_OF_CANCER,
            Value::Num(percent, PERCENT),
        ));
        items.push(Item::new(
            Contains,
            BREAST_COMPOSITION,
            Value::Code(codes::composition(density)),
        ));
        items.push(Item::new(
            Contains,
            MALIGNANCY_CALL,
            Value::Code(codes::pathology(malignancy.call())),
        ));
    }
    let status = if assessed { ASSESSED } else { NOT_ASSESSABLE };
    items.push(Item::new(Contains, ASSESSMENT, Value::Code(status)));
    if let Some(comment) = comment {
        items.push(Item::new(Contains, COMMENT, Value::Text(comment)));
    }
    items
}

fn text(value: &str) -> Value {
    Value::Text(value.to_string())
}
