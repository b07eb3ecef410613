//! What an SR takes from a source image beyond what the pipeline reads: its SOP Class, and the
//! Patient and General Study Module attributes the SR must carry (PS3.3 A.35.3: an SR about a
//! study belongs to that study and patient). They are copied element for element and never
//! logged: this type's `Debug` withholds them.

use crate::imaging::dicom::header;
use crate::imaging::{DecodeLimits, ImageError};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::mem::InMemElement;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use std::fmt;

/// The Patient and General Study attributes an SR copies, with their VRs: Type 2 attributes
/// the source lacks are written empty (PS3.5 7.4.6 "Type 2"); the optional ones only when sent.
const COPIED: [(Tag, VR, bool); 13] = [
    (tags::SPECIFIC_CHARACTER_SET, VR::CS, false),
    (tags::PATIENT_NAME, VR::PN, true),
    (tags::PATIENT_ID, VR::LO, true),
    (tags::ISSUER_OF_PATIENT_ID, VR::LO, false),
    (tags::PATIENT_BIRTH_DATE, VR::DA, true),
    (tags::PATIENT_SEX, VR::CS, true),
    (tags::STUDY_INSTANCE_UID, VR::UI, true),
    (tags::STUDY_DATE, VR::DA, true),
    (tags::STUDY_TIME, VR::TM, true),
    (tags::REFERRING_PHYSICIAN_NAME, VR::PN, true),
    (tags::STUDY_ID, VR::SH, true),
    (tags::ACCESSION_NUMBER, VR::SH, true),
    (tags::STUDY_DESCRIPTION, VR::LO, false),
];

/// One source image as an SR references it.
#[derive(Clone)]
pub struct Source {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    /// The attributes of [`COPIED`] the source has (or empty Type 2 ones), in that order.
    copied: Vec<InMemElement>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("sop_class_uid", &self.sop_class_uid)
            .field("sop_instance_uid", &self.sop_instance_uid)
            .field("study_instance_uid", &self.study_instance_uid)
            .field(
                "copied",
                &format_args!("{} attributes withheld", self.copied.len()),
            )
            .finish()
    }
}

impl Source {
    /// Reads the header of a DICOM Part 10 object (nothing past its Pixel Data).
    pub fn read(bytes: &[u8], limits: &DecodeLimits) -> Result<Source, ImageError> {
        let object = header(bytes, limits)?;
        let uid = |tag| {
            object
                .element_opt(tag)
                .ok()
                .flatten()
                .and_then(|e| e.to_str().ok())
                .map(|v| v.trim_end_matches(['\0', ' ']).to_string())
                .unwrap_or_default()
        };
        let mut sop_class_uid = uid(tags::SOP_CLASS_UID);
        if sop_class_uid.is_empty() {
            sop_class_uid = object
                .meta()
                .media_storage_sop_class_uid()
                .trim_end_matches('\0')
                .to_string();
        }
        let copied = COPIED
            .iter()
            .filter_map(
                |&(tag, vr, type2)| match object.element_opt(tag).ok().flatten() {
                    Some(element) => Some(element.clone()),
                    None => type2.then(|| DataElement::new(tag, vr, PrimitiveValue::Empty)),
                },
            )
            .collect();
        Ok(Source {
            sop_class_uid,
            sop_instance_uid: uid(tags::SOP_INSTANCE_UID),
            study_instance_uid: uid(tags::STUDY_INSTANCE_UID),
            copied,
        })
    }

    /// The source as a header-only DICOM Part 10 object (SOP Class and Instance UIDs and the
    /// copied attributes), which [`Source::read`] reads back: how a source waits on disk for
    /// its study's SR.
    pub fn to_part10(&self) -> Result<Vec<u8>, String> {
        let mut object = InMemDicomObject::new_empty();
        self.copy_into(&mut object);
        object.put(DataElement::new(
            tags::SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(self.sop_class_uid.as_str()),
        ));
        object.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(self.sop_instance_uid.as_str()),
        ));
        let file = object
            .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
            .map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        file.write_all(&mut bytes).map_err(|e| e.to_string())?;
        Ok(bytes)
    }

    /// Puts the copied Patient and General Study attributes into `object`.
    pub fn copy_into(&self, object: &mut InMemDicomObject) {
        for element in &self.copied {
            object.put(element.clone());
        }
    }
}
