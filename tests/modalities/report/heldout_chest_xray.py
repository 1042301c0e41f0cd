"""Held-out chest X-ray reports for measuring the report labeller, with hand labels (CheXpert's 14 findings).

The reports were written for this test (no real patient text) before the labeller's rules and vocabularies, and
labelled by hand from what each report says; they are never used to tune the rules (the unit tests have their own
sentences). Labelling conventions (the same for the three held-out sets):

- ``1``: the report states the finding is present, including "stable", "unchanged", "improving", "resolving",
  "persistent", "small" or "trace" findings; ``0``: it states the finding is absent ("no ...", "without ...", "has
  resolved", "no longer seen", "normal heart size"); ``U``: it hedges ("possible", "may represent", "cannot be
  excluded", "concerning for", "likely", "suggests", "versus", "borderline"); a finding missing from the dict is
  not mentioned (blank).
- Only the FINDINGS and IMPRESSION sections count when the report has them (an indication such as "evaluate for
  pneumonia" is not a label); a report without section headers counts whole.
- A finding is labelled when the report speaks of it (the finding or a synonym), not inferred from another finding:
  "consolidation" does not imply "lung opacity", "cardiomediastinal silhouette" is about the mediastinum, not the
  heart alone. "no finding" is not labelled by hand: it is derived from the other labels by CheXpert's rule.
"""

from __future__ import annotations

U = "u"  # uncertain

REPORTS: list[tuple[str, dict[str, int | str]]] = [
    (
        """EXAMINATION: Chest PA and lateral.
INDICATION: Cough and fever, evaluate for pneumonia.
FINDINGS: There is a focal consolidation in the right lower lobe. No pleural effusion or pneumothorax. The
cardiomediastinal silhouette is normal.
IMPRESSION: Right lower lobe consolidation, compatible with pneumonia in the appropriate clinical setting.""",
        {"consolidation": 1, "pleural effusion": 0, "pneumothorax": 0, "enlarged cardiomediastinum": 0, "pneumonia": U},
    ),
    (
        "Portable AP chest. Endotracheal tube terminates 4 cm above the carina. Nasogastric tube courses below the "
        "diaphragm. Right internal jugular central venous catheter tip in the SVC. Bibasilar atelectasis. No "
        "pneumothorax.",
        {"support devices": 1, "atelectasis": 1, "pneumothorax": 0},
    ),
    (
        """FINDINGS: Lungs are clear. Heart size is normal. No effusion. No pneumothorax. No acute osseous abnormality.
IMPRESSION: No acute cardiopulmonary process.""",
        {"cardiomegaly": 0, "pleural effusion": 0, "pneumothorax": 0},
    ),
    (
        """IMPRESSION:
1. Moderate cardiomegaly with mild pulmonary edema.
2. Small bilateral pleural effusions.
3. No pneumothorax.""",
        {"cardiomegaly": 1, "edema": 1, "pleural effusion": 1, "pneumothorax": 0},
    ),
    (
        "Comparison is made to the prior study. There has been interval resolution of the left pleural effusion. "
        "Persistent left basilar opacity, which may represent atelectasis or pneumonia. Stable mild enlargement of the "
        "cardiac silhouette.",
        {"pleural effusion": 0, "lung opacity": 1, "atelectasis": U, "pneumonia": U, "cardiomegaly": 1},
    ),
    (
        """FINDINGS: Right-sided chest tube in place. Small residual right apical pneumothorax, slightly decreased from
prior. Subcutaneous emphysema in the right chest wall. No effusion.
IMPRESSION: Small right apical pneumothorax, decreased. Chest tube in place.""",
        {"support devices": 1, "pneumothorax": 1, "pleural effusion": 0},
    ),
    (
        """Findings: The heart is enlarged. Pulmonary vascular congestion and interstitial edema. Blunting of the
costophrenic angles suggests small effusions. No focal consolidation.
Impression: Findings consistent with congestive heart failure.""",
        {"cardiomegaly": 1, "edema": 1, "pleural effusion": U, "consolidation": 0},
    ),
    (
        "No acute cardiopulmonary abnormality. Heart size normal. Lungs clear. Old healed left rib fractures.",
        {"cardiomegaly": 0, "fracture": 1},
    ),
    (
        "IMPRESSION: Left lower lobe opacity, cannot exclude pneumonia. Recommend follow-up radiographs after "
        "treatment.",
        {"lung opacity": 1, "pneumonia": U},
    ),
    (
        "FINDINGS: A 1.5 cm nodule is seen projecting over the right mid lung. No pleural effusion. Cardiac silhouette "
        "within normal limits. IMPRESSION: Right mid lung nodule, CT recommended for further characterization.",
        {"lung lesion": 1, "pleural effusion": 0, "cardiomegaly": 0},
    ),
    (
        "Single portable view of the chest. Left-sided pacemaker with leads in the right atrium and right ventricle. "
        "Median sternotomy wires are intact. Mild cardiomegaly, unchanged. No overt pulmonary edema. Small left "
        "pleural effusion is unchanged.",
        {"support devices": 1, "cardiomegaly": 1, "edema": 0, "pleural effusion": 1},
    ),
    (
        "Widened mediastinum, concerning for aortic pathology; correlate with CT angiography. Lungs are clear. No "
        "pneumothorax.",
        {"enlarged cardiomediastinum": 1, "pneumothorax": 0},
    ),
    (
        "IMPRESSION: No change in the moderate right pleural effusion with adjacent atelectasis. No new consolidation.",
        {"pleural effusion": 1, "atelectasis": 1, "consolidation": 0},
    ),
    (
        "FINDINGS: Bilateral patchy airspace opacities, greatest in the lower lobes, likely representing multifocal "
        "pneumonia. Differential includes aspiration. Heart size is normal. No pleural effusion.",
        {"lung opacity": 1, "pneumonia": U, "cardiomegaly": 0, "pleural effusion": 0},
    ),
    (
        "Limited exam due to patient rotation. The right costophrenic angle is excluded from the field of view. "
        "Possible small right pleural effusion. Left lung is clear. No pneumothorax on the left.",
        {"pleural effusion": U, "pneumothorax": 0},
    ),
    (
        "Interval removal of the endotracheal tube and nasogastric tube. Right PICC line terminates in the mid SVC. "
        "Improving bibasilar atelectasis. No pneumothorax or effusion.",
        {"support devices": 1, "atelectasis": 1, "pneumothorax": 0, "pleural effusion": 0},
    ),
    (
        "Impression: Clear lungs. No evidence of pneumonia, edema, or effusion. Normal heart size.",
        {"pneumonia": 0, "edema": 0, "pleural effusion": 0, "cardiomegaly": 0},
    ),
    (
        """FINDINGS: There is a large left pneumothorax with mediastinal shift to the right. No rib fracture is
identified.
IMPRESSION: Large left pneumothorax with mediastinal shift, findings concerning for tension. Referring physician
notified.""",
        {"pneumothorax": 1, "fracture": 0},
    ),
    (
        "Right upper lobe consolidation has resolved. Minimal residual scarring. The heart and mediastinum are within "
        "normal limits.",
        {"consolidation": 0, "lung opacity": 1, "cardiomegaly": 0, "enlarged cardiomediastinum": 0},
    ),
    (
        "PA and lateral views. Hyperinflated lungs consistent with COPD. No focal consolidation, pleural effusion or "
        "pneumothorax. Calcified granuloma in the left upper lobe.",
        {"consolidation": 0, "pleural effusion": 0, "pneumothorax": 0, "lung lesion": 1},
    ),
    (
        "The endotracheal tube tip is 2 cm above the carina; recommend withdrawal by 1 to 2 cm. Diffuse bilateral hazy "
        "opacities, which could reflect pulmonary edema or ARDS. No large effusion.",
        {"support devices": 1, "lung opacity": 1, "edema": U, "pleural effusion": 0},
    ),
    ("IMPRESSION: Stable cardiomegaly. No acute process.", {"cardiomegaly": 1}),
    (
        "FINDINGS: Left lower lobe collapse. Elevation of the left hemidiaphragm. No pneumothorax. IMPRESSION: Left "
        "lower lobe collapse; mucous plugging is a consideration.",
        {"atelectasis": 1, "pneumothorax": 0},
    ),
    (
        "Mild pulmonary vascular congestion without frank edema. Heart size is borderline enlarged. No effusion.",
        {"edema": 0, "cardiomegaly": U, "pleural effusion": 0},
    ),
    (
        "Chest radiograph: Lungs are hyperexpanded. There is no pneumothorax. There is a new right lower lobe "
        "infiltrate. Small right effusion.",
        {"pneumothorax": 0, "lung opacity": 1, "pleural effusion": 1},
    ),
    (
        "Persistent opacification of the left hemithorax, likely a combination of large pleural effusion and "
        "atelectasis. Left chest tube has been removed. No pneumothorax identified.",
        {"lung opacity": 1, "pleural effusion": U, "atelectasis": U, "support devices": 0, "pneumothorax": 0},
    ),
    (
        "The patient is status post CABG. Sternotomy wires and mediastinal clips are noted. Heart size is top normal. "
        "Lungs are clear.",
        {"support devices": 1, "cardiomegaly": 0},
    ),
    (
        """Impression:
1. Right lower lobe pneumonia.
2. Small right parapneumonic effusion.
3. No pneumothorax.""",
        {"pneumonia": 1, "pleural effusion": 1, "pneumothorax": 0},
    ),
    (
        "Findings: Displaced fracture of the right seventh rib. Small right pneumothorax. No hemothorax.",
        {"fracture": 1, "pneumothorax": 1, "pleural effusion": 0},
    ),
    (
        "There is no evidence of pneumothorax following the procedure. The biopsy needle track is not seen. Small "
        "amount of perihilar opacity may be post-procedural hemorrhage.",
        {"pneumothorax": 0, "lung opacity": 1},
    ),
    (
        """Lungs: Patchy opacities at both bases, atelectasis versus aspiration.
Pleura: No effusion or pneumothorax.
Heart: Normal size.
Bones: Degenerative changes of the thoracic spine.""",
        {"lung opacity": 1, "atelectasis": U, "pleural effusion": 0, "pneumothorax": 0, "cardiomegaly": 0},
    ),
    (
        "IMPRESSION: Interval placement of a left subclavian central venous catheter with tip at the cavoatrial "
        "junction. No pneumothorax.",
        {"support devices": 1, "pneumothorax": 0},
    ),
    (
        "Findings are suspicious for left upper lobe mass. Further evaluation with contrast enhanced CT is "
        "recommended. No pleural effusion.",
        {"lung lesion": U, "pleural effusion": 0},
    ),
    (
        "Chronic interstitial markings are unchanged. No superimposed acute airspace disease. Heart size normal.",
        {"lung opacity": 1, "cardiomegaly": 0},
    ),
    (
        "Bilateral pleural thickening with calcified pleural plaques, consistent with prior asbestos exposure. No "
        "effusion.",
        {"pleural other": 1, "pleural effusion": 0},
    ),
    (
        """FINDINGS: Cardiomediastinal silhouette is enlarged, partly due to AP technique. Low lung volumes with
bibasilar
atelectasis.
IMPRESSION: Low lung volumes. Enlarged cardiomediastinal silhouette may be accentuated by technique.""",
        {"enlarged cardiomediastinum": 1, "atelectasis": 1},
    ),
    (
        "no acute fracture. no pneumothorax. lungs clear. heart normal in size.",
        {"fracture": 0, "pneumothorax": 0, "cardiomegaly": 0},
    ),
    (
        "Nasogastric tube is coiled in the stomach. Endotracheal tube is 5 cm above the carina. There is worsening "
        "bilateral alveolar edema. Possible superimposed infection in the right lower lobe.",
        {"support devices": 1, "edema": 1, "pneumonia": U},
    ),
    (
        "IMPRESSION: Resolution of previously seen right middle lobe pneumonia. No new focal opacity.",
        {"pneumonia": 0, "lung opacity": 0},
    ),
    (
        "The heart is normal in size. There is a rounded 3 cm mass in the left hilum concerning for malignancy. No "
        "pleural effusion.",
        {"cardiomegaly": 0, "lung lesion": 1, "pleural effusion": 0},
    ),
    (
        "Stable position of right chest port. Lungs are clear without evidence of consolidation. Hilar and mediastinal "
        "contours are normal.",
        {"support devices": 1, "consolidation": 0, "enlarged cardiomediastinum": 0},
    ),
    (
        "Moderate left pleural effusion has increased since the prior exam. Left basilar opacity likely reflects "
        "compressive atelectasis, although pneumonia cannot be excluded.",
        {"pleural effusion": 1, "lung opacity": 1, "atelectasis": U, "pneumonia": U},
    ),
    (
        "FINDINGS: No pleural effusion. There is mild blunting of the left costophrenic angle, which may be due to "
        "pleural thickening or scarring.",
        {"pleural effusion": 0, "pleural other": U},
    ),
    (
        "Comparison: none. The lungs are well expanded and clear. There is no consolidation, effusion, or "
        "pneumothorax. The heart is not enlarged.",
        {"consolidation": 0, "pleural effusion": 0, "pneumothorax": 0, "cardiomegaly": 0},
    ),
    (
        "Interval increase in bilateral perihilar opacities and septal lines, consistent with worsening pulmonary "
        "edema. Cardiomegaly persists. Bilateral effusions.",
        {"lung opacity": 1, "edema": 1, "cardiomegaly": 1, "pleural effusion": 1},
    ),
    (
        "Study limited by motion. No definite acute cardiopulmonary process. A subtle opacity at the right base could "
        "represent atelectasis or early pneumonia.",
        {"lung opacity": 1, "atelectasis": U, "pneumonia": U},
    ),
    ("IMPRESSION: Pneumothorax has resolved following chest tube removal.", {"pneumothorax": 0, "support devices": 0}),
    (
        "Findings: Diffuse osteopenia. Compression fracture of a mid thoracic vertebral body, age indeterminate. Lungs "
        "are clear. No effusion.",
        {"fracture": 1, "pleural effusion": 0},
    ),
    (
        "The right lung is clear. Left lower lobe consolidation is again noted and slightly improved. Left pleural "
        "effusion, small. Cardiac silhouette is stable in size and enlarged.",
        {"consolidation": 1, "pleural effusion": 1, "cardiomegaly": 1},
    ),
    (
        "Supine AP view. Evaluation for pneumothorax is limited on supine film; no definite pneumothorax is seen. Deep "
        "sulcus sign is absent.",
        {"pneumothorax": 0},
    ),
    (
        "Tracheostomy tube in place. Right basilar atelectasis is unchanged. No focal consolidation to suggest "
        "pneumonia. Heart size is normal.",
        {"support devices": 1, "atelectasis": 1, "consolidation": 0, "pneumonia": 0, "cardiomegaly": 0},
    ),
    (
        "IMPRESSION: No radiographic evidence of acute cardiopulmonary disease. Specifically, no pneumonia.",
        {"pneumonia": 0},
    ),
    (
        "Hazy opacity in the right upper lung, may represent an early infiltrate. Recommend follow-up. No "
        "pneumothorax.",
        {"lung opacity": 1, "pneumothorax": 0},
    ),
    (
        "There is a left basilar pleural-based density, which may represent loculated fluid versus pleural thickening. "
        "Heart size is at the upper limits of normal.",
        {"pleural effusion": U, "pleural other": U, "cardiomegaly": 0},
    ),
    (
        """FINDINGS:
Lines/tubes: Left IJ catheter tip in the SVC. Enteric tube tip in the stomach.
Lungs: Worsening consolidation in the left lower lobe.
Pleura: Small left effusion. No pneumothorax.
Heart/mediastinum: Stable.
IMPRESSION: Worsening left lower lobe consolidation, concerning for pneumonia.""",
        {"support devices": 1, "consolidation": 1, "pleural effusion": 1, "pneumothorax": 0, "pneumonia": U},
    ),
    (
        "No acute cardiopulmonary abnormality. No pneumothorax status post right lung biopsy.",
        {"pneumothorax": 0},
    ),
    (
        "FINDINGS: The heart size is normal. There is no pleural effusion or pneumothorax. The lungs are clear of "
        "focal consolidation. There is a healing fracture of the left clavicle.",
        {"cardiomegaly": 0, "pleural effusion": 0, "pneumothorax": 0, "consolidation": 0, "fracture": 1},
    ),
    (
        "Impression: Right lower lobe pneumonia is not excluded in the correct clinical context. Small left effusion "
        "versus pleural thickening.",
        {"pneumonia": U, "pleural effusion": U, "pleural other": U},
    ),
    (
        "Severe cardiomegaly. Pulmonary edema has improved but not completely resolved. Small bilateral effusions, "
        "decreased.",
        {"cardiomegaly": 1, "edema": 1, "pleural effusion": 1},
    ),
    (
        """IMPRESSION:
1. Left upper lobe cavitary lesion, which may represent infection or neoplasm.
2. No pleural effusion.""",
        {"lung lesion": 1, "pneumonia": U, "pleural effusion": 0},
    ),
    (
        "Two views of the chest. The cardiac and mediastinal silhouettes are unremarkable. No airspace consolidation. "
        "Small calcified granulomas are noted. No pleural effusion. Impression: No acute disease.",
        {
            "cardiomegaly": 0,
            "enlarged cardiomediastinum": 0,
            "consolidation": 0,
            "lung lesion": 1,
            "pleural effusion": 0,
        },
    ),
    (
        "There is increased retrocardiac opacity which may reflect atelectasis, infection, or aspiration. Heart size "
        "mildly enlarged. A left chest wall pacemaker is present.",
        {"lung opacity": 1, "atelectasis": U, "pneumonia": U, "cardiomegaly": 1, "support devices": 1},
    ),
    (
        "FINDINGS: Interstitial pulmonary edema. Kerley B lines. IMPRESSION: Congestive heart failure with "
        "interstitial edema; no evidence of pneumonia.",
        {"edema": 1, "pneumonia": 0},
    ),
    (
        "One frontal view. Right PICC tip projects over the cavoatrial junction. There is no focal consolidation. The "
        "previously noted small right pneumothorax is no longer visualized.",
        {"support devices": 1, "consolidation": 0, "pneumothorax": 0},
    ),
    (
        "FINDINGS: Mild cardiomegaly. Patchy left base opacity. No pneumothorax. IMPRESSION: Left basilar opacity, "
        "atelectasis favored over pneumonia. Mild cardiomegaly.",
        {"cardiomegaly": 1, "lung opacity": 1, "pneumothorax": 0, "atelectasis": U, "pneumonia": U},
    ),
]
