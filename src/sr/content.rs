//! SR content items (PS3.3 C.17.3, C.18) as a tree, and their encoding into the SR Document
//! Content Module: each item's Relationship Type, Value Type, Concept Name and value, its
//! children in a Content Sequence.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// A coded concept (PS3.3 Table 8.8-1, Basic Code Sequence Macro).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub value: &'static str,
    pub scheme: &'static str,
    pub meaning: &'static str,
}

impl Code {
    pub const fn new(value: &'static str, scheme: &'static str, meaning: &'static str) -> Code {
        Code {
            value,
            scheme,
            meaning,
        }
    }

    /// The code as one item of a code sequence.
    fn item(self) -> InMemDicomObject {
        InMemDicomObject::from_element_iter([
            string(tags::CODE_VALUE, VR::SH, self.value),
            string(tags::CODING_SCHEME_DESIGNATOR, VR::SH, self.scheme),
            string(tags::CODE_MEANING, VR::LO, self.meaning),
        ])
    }
}

/// How an item relates to its parent (PS3.3 C.17.3.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relationship {
    Contains,
    HasConceptMod,
    HasObsContext,
    HasAcqContext,
}

impl Relationship {
    fn name(self) -> &'static str {
        match self {
            Relationship::Contains => "CONTAINS",
            Relationship::HasConceptMod => "HAS CONCEPT MOD",
            Relationship::HasObsContext => "HAS OBS CONTEXT",
            Relationship::HasAcqContext => "HAS ACQ CONTEXT",
        }
    }
}

/// What an item holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A heading over its children (Continuity of Content SEPARATE).
    Container,
    Code(Code),
    Text(String),
    UidRef(String),
    /// A measurement in `units`.
    Num(f64, Code),
    /// A reference to an image: (SOP Class UID, SOP Instance UID).
    Image(String, String),
}

/// One content item with its children.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub relationship: Relationship,
    /// Required for every value type but IMAGE (PS3.3 C.17.3.2.1).
    pub concept: Option<Code>,
    pub value: Value,
    pub children: Vec<Item>,
}

impl Item {
    pub fn new(relationship: Relationship, concept: Code, value: Value) -> Item {
        Item {
            relationship,
            concept: Some(concept),
            value,
            children: Vec::new(),
        }
    }

    /// A CONTAINER of `children`.
    pub fn container(relationship: Relationship, concept: Code, children: Vec<Item>) -> Item {
        Item {
            children,
            ..Item::new(relationship, concept, Value::Container)
        }
    }

    /// An IMAGE reference, with or without a concept name.
    pub fn image(concept: Option<Code>, sop_class: &str, sop_instance: &str) -> Item {
        Item {
            relationship: Relationship::Contains,
            concept,
            value: Value::Image(sop_class.into(), sop_instance.into()),
            children: Vec::new(),
        }
    }

    pub fn with_children(mut self, children: Vec<Item>) -> Item {
        self.children = children;
        self
    }

    /// The item as one Content Sequence item.
    fn encode(&self) -> InMemDicomObject {
        let mut object = InMemDicomObject::new_empty();
        object.put(string(
            tags::RELATIONSHIP_TYPE,
            VR::CS,
            self.relationship.name(),
        ));
        put_node(&mut object, self.concept, &self.value, &self.children);
        object
    }
}

/// The root CONTAINER's attributes, put straight into the data set (the root has no
/// relationship), with its template identification (PS3.3 C.18.8, Mapping Resource DCMR).
pub fn put_root(object: &mut InMemDicomObject, concept: Code, template: &str, children: &[Item]) {
    put_node(object, Some(concept), &Value::Container, children);
    let identification = InMemDicomObject::from_element_iter([
        string(tags::MAPPING_RESOURCE, VR::CS, "DCMR"),
        string(tags::TEMPLATE_IDENTIFIER, VR::CS, template),
    ]);
    object.put(sequence(
        tags::CONTENT_TEMPLATE_SEQUENCE,
        vec![identification],
    ));
}

fn put_node(
    object: &mut InMemDicomObject,
    concept: Option<Code>,
    value: &Value,
    children: &[Item],
) {
    if let Some(concept) = concept {
        object.put(sequence(
            tags::CONCEPT_NAME_CODE_SEQUENCE,
            vec![concept.item()],
        ));
    }
    let kind = match value {
        Value::Container => {
            object.put(string(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"));
            "CONTAINER"
        }
        Value::Code(code) => {
            object.put(sequence(tags::CONCEPT_CODE_SEQUENCE, vec![code.item()]));
            "CODE"
        }
        Value::Text(text) => {
            object.put(string(tags::TEXT_VALUE, VR::UT, text));
            "TEXT"
        }
        Value::UidRef(uid) => {
            object.put(string(tags::UID, VR::UI, uid));
            "UIDREF"
        }
        Value::Num(number, units) => {
            put_measurement(object, *number, *units);
            "NUM"
        }
        Value::Image(class, instance) => {
            object.put(sequence(
                tags::REFERENCED_SOP_SEQUENCE,
                vec![reference(class, instance)],
            ));
            "IMAGE"
        }
    };
    object.put(string(tags::VALUE_TYPE, VR::CS, kind));
    if !children.is_empty() {
        let items = children.iter().map(Item::encode).collect();
        object.put(sequence(tags::CONTENT_SEQUENCE, items));
    }
}

/// Numeric Measurement Macro (PS3.3 C.18.1): the value with its units.
fn put_measurement(object: &mut InMemDicomObject, number: f64, units: Code) {
    let measured = InMemDicomObject::from_element_iter([
        string(tags::NUMERIC_VALUE, VR::DS, &decimal(number)),
        sequence(tags::MEASUREMENT_UNITS_CODE_SEQUENCE, vec![units.item()]),
    ]);
    object.put(sequence(tags::MEASURED_VALUE_SEQUENCE, vec![measured]));
}

/// A DS value: at most 16 characters, four decimals at most, no trailing zeros.
fn decimal(number: f64) -> String {
    let text = format!("{number:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.chars().take(16).collect()
}

/// One item of a Referenced SOP Sequence (SOP Instance Reference Macro).
pub fn reference(sop_class: &str, sop_instance: &str) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        string(tags::REFERENCED_SOP_CLASS_UID, VR::UI, sop_class),
        string(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, sop_instance),
    ])
}

pub fn string(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

pub fn sequence(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_fit_a_ds_value() {
        assert_eq!(decimal(12.5), "12.5");
        assert_eq!(decimal(100.0), "100");
        assert_eq!(decimal(0.000_01), "0");
        assert_eq!(decimal(33.333_333), "33.3333");
    }

    #[test]
    fn a_measurement_carries_its_value_and_units() {
        let units = Code::new("%", "UCUM", "Percent");
        let concept = Code::new("111047", "DCM", "Probability of cancer");
        let item = Item::new(Relationship::Contains, concept, Value::Num(28.5, units)).encode();
        let measured = &item
            .element(tags::MEASURED_VALUE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[0];
        assert_eq!(
            measured
                .element(tags::NUMERIC_VALUE)
                .unwrap()
                .to_str()
                .unwrap(),
            "28.5"
        );
        let unit = &measured
            .element(tags::MEASUREMENT_UNITS_CODE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[0];
        assert_eq!(
            unit.element(tags::CODE_VALUE).unwrap().to_str().unwrap(),
            "%"
        );
        assert_eq!(
            item.element(tags::VALUE_TYPE).unwrap().to_str().unwrap(),
            "NUM"
        );
        assert_eq!(
            item.element(tags::RELATIONSHIP_TYPE)
                .unwrap()
                .to_str()
                .unwrap(),
            "CONTAINS"
        );
    }
}
