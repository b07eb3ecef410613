"""Reads an SR the way a PACS-side consumer would, with highdicom (tests/sr.rs runs it):
prints the TID 1500 measurement groups as JSON, or fails if highdicom cannot read the file."""
import json
import sys

import highdicom as hd

sr = hd.sr.srread(sys.argv[1])
report = hd.sr.MeasurementReport.from_sequence([sr])
groups = []
for group in report.get_image_measurement_groups():
    groups.append({
        "tracking": group.tracking_identifier,
        "tracking_uid": str(group.tracking_uid),
        "measurements": [[m.name.meaning, float(m.value), m.unit.value] for m in group.get_measurements()],
        "evaluations": {q.name.meaning: q.value.meaning for q in group.get_qualitative_evaluations()},
        "sources": [i.referenced_sop_instance_uid for i in group.source_images],
    })
print(json.dumps({
    "sop_class_uid": sr.SOPClassUID,
    "sop_instance_uid": sr.SOPInstanceUID,
    "patient_name": str(sr.PatientName),
    "study_instance_uid": sr.StudyInstanceUID,
    "groups": groups,
}))
