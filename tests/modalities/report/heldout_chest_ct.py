"""Held-out chest CT reports for measuring the report labeller, with hand labels (the CT-RATE abnormalities +
pneumothorax).

Written for this test before the labeller's rules and never used to tune them; the labelling conventions are those of
``heldout_chest_xray`` (1 present, 0 absent, U hedged, missing = not mentioned; findings and impression only when the
report has those sections). CT-specific choices: "bronchial wall thickening" is peribronchial thickening; a lung mass
and a calcified granuloma are pulmonary nodules; ground glass is lung opacity (a ground-glass *nodule* is a nodule);
stents, catheters, tubes, wires, clips, valves and devices are medical material; "subcutaneous emphysema" is not
emphysema; atherosclerosis of the aorta is arterial wall calcification, coronary calcification is its own finding.
"""

from __future__ import annotations

U = "u"  # uncertain

REPORTS: list[tuple[str, dict[str, int | str]]] = [
    (
        """FINDINGS: Lungs: A 6 mm solid nodule in the right upper lobe. Mild centrilobular emphysema in the upper
lobes.
No consolidation. Pleura: No pleural effusion or pneumothorax. Mediastinum: No lymphadenopathy. Heart size is normal.
No pericardial effusion. Coronary artery calcifications are present.
IMPRESSION: 6 mm right upper lobe nodule; follow-up per Fleischner guidelines. Emphysema.""",
        {
            "pulmonary nodule": 1,
            "emphysema": 1,
            "consolidation": 0,
            "pleural effusion": 0,
            "pneumothorax": 0,
            "lymphadenopathy": 0,
            "cardiomegaly": 0,
            "pericardial effusion": 0,
            "coronary artery wall calcification": 1,
        },
    ),
    (
        """IMPRESSION:
1. Large right pleural effusion with compressive atelectasis of the right lower lobe.
2. Cardiomegaly with small pericardial effusion.
3. Mediastinal lymph nodes measuring up to 1.4 cm in short axis, likely reactive.""",
        {"pleural effusion": 1, "atelectasis": 1, "cardiomegaly": 1, "pericardial effusion": 1, "lymphadenopathy": 1},
    ),
    (
        "Findings: Bilateral ground-glass opacities with a peripheral and basal predominance and interlobular septal "
        "thickening (crazy paving). No pleural effusion. Heart size normal. Impression: Findings may represent "
        "atypical infection, including viral pneumonia; organizing pneumonia is also a consideration.",
        {"lung opacity": 1, "interlobular septal thickening": 1, "pleural effusion": 0, "cardiomegaly": 0},
    ),
    (
        "Traction bronchiectasis and honeycombing in the lower lobes, consistent with usual interstitial pneumonia "
        "pattern of pulmonary fibrosis. No lymphadenopathy. Aortic atherosclerotic calcifications.",
        {
            "bronchiectasis": 1,
            "pulmonary fibrotic sequela": 1,
            "lymphadenopathy": 0,
            "arterial wall calcification": 1,
        },
    ),
    (
        """FINDINGS: The lungs are clear without nodules, consolidation or effusion. There is no pneumothorax. The
heart is
normal in size without pericardial effusion. No thoracic lymphadenopathy. The visualized upper abdomen is
unremarkable.
IMPRESSION: No acute intrathoracic abnormality.""",
        {
            "pulmonary nodule": 0,
            "consolidation": 0,
            "pleural effusion": 0,
            "pneumothorax": 0,
            "cardiomegaly": 0,
            "pericardial effusion": 0,
            "lymphadenopathy": 0,
        },
    ),
    (
        "IMPRESSION: Small hiatal hernia. Mild bibasilar dependent atelectasis. No pulmonary embolism.",
        {"hiatal hernia": 1, "atelectasis": 1},
    ),
    (
        "Mosaic attenuation of the lung parenchyma, which may reflect small airways disease or air trapping; "
        "expiratory images are recommended. Mild bronchial wall thickening.",
        {"mosaic attenuation pattern": 1, "peribronchial thickening": 1},
    ),
    (
        "Right-sided port catheter with tip in the cavoatrial junction. Median sternotomy wires. A prosthetic aortic "
        "valve is noted. Dense calcification of the coronary arteries. Thoracic aorta is of normal caliber with mild "
        "wall calcifications.",
        {"medical material": 1, "coronary artery wall calcification": 1, "arterial wall calcification": 1},
    ),
    (
        """FINDINGS: There is a 2.3 cm spiculated mass in the left upper lobe, highly suspicious for primary lung
malignancy. Enlarged left hilar and subcarinal lymph nodes. Small left pleural effusion. No pericardial effusion.
IMPRESSION: Left upper lobe mass with hilar and mediastinal adenopathy, concerning for primary bronchogenic
carcinoma.""",
        {"pulmonary nodule": 1, "lymphadenopathy": 1, "pleural effusion": 1, "pericardial effusion": 0},
    ),
    (
        "Consolidation in the right lower lobe with air bronchograms, compatible with pneumonia. Small right "
        "parapneumonic effusion. No pneumothorax. Heart size is normal.",
        {"consolidation": 1, "pleural effusion": 1, "pneumothorax": 0, "cardiomegaly": 0},
    ),
    (
        "Centrilobular and paraseptal emphysema, severe in the upper lobes. Scattered bronchial wall thickening. No "
        "suspicious pulmonary nodules. No pleural effusion.",
        {"emphysema": 1, "peribronchial thickening": 1, "pulmonary nodule": 0, "pleural effusion": 0},
    ),
    (
        "IMPRESSION: Previously described left lower lobe consolidation has resolved. Residual linear fibrotic bands "
        "in the left lower lobe. No new nodules.",
        {"consolidation": 0, "pulmonary fibrotic sequela": 1, "pulmonary nodule": 0},
    ),
    (
        "FINDINGS: Status post right upper lobectomy with surgical clips at the bronchial stump. No evidence of local "
        "recurrence. Stable 4 mm left lower lobe nodule. No lymphadenopathy. No pleural or pericardial effusion.",
        {
            "medical material": 1,
            "pulmonary nodule": 1,
            "lymphadenopathy": 0,
            "pleural effusion": 0,
            "pericardial effusion": 0,
        },
    ),
    (
        "Small pericardial effusion, unchanged. Cardiomegaly. Bilateral moderate pleural effusions with adjacent "
        "passive atelectasis. Interlobular septal thickening suggests interstitial edema.",
        {
            "pericardial effusion": 1,
            "cardiomegaly": 1,
            "pleural effusion": 1,
            "atelectasis": 1,
            "interlobular septal thickening": 1,
        },
    ),
    (
        "The lungs demonstrate scattered tree-in-bud nodularity in the right middle lobe, likely infectious or "
        "inflammatory. Bronchiectasis in the right middle lobe. No pleural effusion.",
        {"bronchiectasis": 1, "pleural effusion": 0},
    ),
    (
        "FINDINGS: Hiatal hernia is not present. The esophagus is normal. Lungs are clear. No lymph nodes of "
        "pathological size in the mediastinum or hila.",
        {"hiatal hernia": 0, "lymphadenopathy": 0},
    ),
    (
        "No evidence of pneumothorax after biopsy. Small amount of perilesional ground-glass opacity consistent with "
        "hemorrhage. Biopsied nodule in the right lower lobe measures 1.2 cm.",
        {"pneumothorax": 0, "lung opacity": 1, "pulmonary nodule": 1},
    ),
    (
        """IMPRESSION:
1. No acute pulmonary embolism.
2. Possible small left lower lobe consolidation versus atelectasis.
3. Coronary artery calcification.""",
        {"consolidation": U, "atelectasis": U, "coronary artery wall calcification": 1},
    ),
    (
        "Moderate pericardial effusion, increased from prior. No cardiomegaly. Trace bilateral pleural effusions.",
        {"pericardial effusion": 1, "cardiomegaly": 0, "pleural effusion": 1},
    ),
    (
        """Lungs: Subpleural reticulation and ground glass in both lower lobes, possibly early fibrotic interstitial
lung
disease. No honeycombing. No traction bronchiectasis.
Mediastinum: Mildly enlarged mediastinal lymph nodes, likely reactive.""",
        {"lung opacity": 1, "pulmonary fibrotic sequela": U, "bronchiectasis": 0, "lymphadenopathy": 1},
    ),
    (
        "FINDINGS: Endotracheal tube and nasogastric tube in place. Dense consolidation in both lower lobes with air "
        "bronchograms. Bilateral small pleural effusions. No pneumothorax. IMPRESSION: Bilateral lower lobe "
        "consolidation, aspiration pneumonia is not excluded.",
        {"medical material": 1, "consolidation": 1, "pleural effusion": 1, "pneumothorax": 0},
    ),
    (
        "There is no mediastinal, hilar or axillary lymphadenopathy. The thyroid is unremarkable. Atherosclerotic "
        "calcifications of the aortic arch and coronary arteries.",
        {"lymphadenopathy": 0, "arterial wall calcification": 1, "coronary artery wall calcification": 1},
    ),
    (
        "IMPRESSION: Emphysema. Apical pleuroparenchymal scarring. No pulmonary nodule suspicious for malignancy.",
        {"emphysema": 1, "pulmonary fibrotic sequela": 1, "pulmonary nodule": 0},
    ),
    (
        "Small right pneumothorax, decreased. Right chest tube in place. Subcutaneous emphysema along the right chest "
        "wall.",
        {"pneumothorax": 1, "medical material": 1},
    ),
    (
        "FINDINGS: Heart size upper normal. Pericardial thickening without effusion. No coronary artery calcification. "
        "The aorta is normal in caliber without calcification.",
        {
            "cardiomegaly": 0,
            "pericardial effusion": 0,
            "coronary artery wall calcification": 0,
            "arterial wall calcification": 0,
        },
    ),
    (
        "Findings suggestive of mild bronchiectasis in the lingula. Peribronchial thickening. Mucus plugging in the "
        "left lower lobe. No consolidation.",
        {"bronchiectasis": U, "peribronchial thickening": 1, "consolidation": 0},
    ),
    (
        "IMPRESSION: Interval development of a moderate left pleural effusion. New left lower lobe atelectasis. Stable "
        "subcentimeter pulmonary nodules.",
        {"pleural effusion": 1, "atelectasis": 1, "pulmonary nodule": 1},
    ),
    (
        "There is diffuse mosaic attenuation. The airways are patent. No bronchiectasis. No interlobular septal "
        "thickening. No pleural effusion.",
        {
            "mosaic attenuation pattern": 1,
            "bronchiectasis": 0,
            "interlobular septal thickening": 0,
            "pleural effusion": 0,
        },
    ),
    (
        "A pacemaker is present with leads in the right atrium and ventricle. Mild cardiomegaly. Calcified "
        "atherosclerotic plaque in the descending thoracic aorta.",
        {"medical material": 1, "cardiomegaly": 1, "arterial wall calcification": 1},
    ),
    (
        "No pleural effusion. No pneumothorax. No consolidation. Small calcified granuloma in the right upper lobe. "
        "Otherwise no pulmonary nodules.",
        {"pleural effusion": 0, "pneumothorax": 0, "consolidation": 0, "pulmonary nodule": 1},
    ),
    (
        """FINDINGS: Large hiatal hernia containing most of the stomach. Bibasilar atelectasis. Otherwise clear lungs.
IMPRESSION: Large hiatal hernia.""",
        {"hiatal hernia": 1, "atelectasis": 1},
    ),
    (
        "Ground glass opacities have resolved. Minimal residual interlobular septal thickening in the right lower "
        "lobe. No pleural effusion.",
        {"lung opacity": 0, "interlobular septal thickening": 1, "pleural effusion": 0},
    ),
    (
        "Lungs: Multiple bilateral pulmonary nodules, the largest measuring 1.8 cm in the right lower lobe, consistent "
        "with metastatic disease. Enlarged right paratracheal lymph node measuring 1.6 cm. Small right pleural "
        "effusion.",
        {"pulmonary nodule": 1, "lymphadenopathy": 1, "pleural effusion": 1},
    ),
    (
        "IMPRESSION: No pericardial effusion. Normal heart size. No evidence of aortic dissection. Mild calcification "
        "of the aortic wall.",
        {"pericardial effusion": 0, "cardiomegaly": 0, "arterial wall calcification": 1},
    ),
    (
        "Mild paraseptal emphysema. Right lower lobe 3 mm nodule, likely benign intrapulmonary lymph node. No "
        "lymphadenopathy.",
        {"emphysema": 1, "pulmonary nodule": 1, "lymphadenopathy": 0},
    ),
    (
        "Findings: Ill-defined consolidation in the lingula which could represent infection or aspiration; pulmonary "
        "infarct is less likely. Trace pleural effusion on the left.",
        {"consolidation": 1, "pleural effusion": 1},
    ),
    (
        """FINDINGS: Airways: Bronchial wall thickening and cylindrical bronchiectasis in both lower lobes. Lungs:
Areas of
mosaic attenuation. No consolidation.
IMPRESSION: Bronchiectasis with airway wall thickening and mosaic attenuation, suggestive of small airway disease.""",
        {
            "peribronchial thickening": 1,
            "bronchiectasis": 1,
            "mosaic attenuation pattern": 1,
            "consolidation": 0,
        },
    ),
    (
        "Cannot exclude a small pericardial effusion. The heart is enlarged. Left ventricular assist device in place.",
        {"pericardial effusion": U, "cardiomegaly": 1, "medical material": 1},
    ),
    (
        "IMPRESSION: Stable post-inflammatory fibrotic sequelae in the right upper lobe. No new pulmonary opacity. No "
        "lymphadenopathy.",
        {"pulmonary fibrotic sequela": 1, "lung opacity": 0, "lymphadenopathy": 0},
    ),
    (
        "There are multiple calcified mediastinal lymph nodes, not enlarged, consistent with prior granulomatous "
        "disease. Calcified splenic granulomas.",
        {"lymphadenopathy": 0},
    ),
    (
        "FINDINGS: Diffuse ground-glass attenuation throughout both lungs with smooth interlobular septal thickening. "
        "Small bilateral pleural effusions. Cardiomegaly. Findings are most consistent with pulmonary edema.",
        {"lung opacity": 1, "interlobular septal thickening": 1, "pleural effusion": 1, "cardiomegaly": 1},
    ),
    (
        "No hiatal hernia. No lymphadenopathy. Lungs clear. Stent in the left anterior descending artery.",
        {"hiatal hernia": 0, "lymphadenopathy": 0, "medical material": 1},
    ),
    (
        """Lungs: Right lower lobe subsegmental atelectasis. A 5 mm ground-glass nodule in the left upper lobe. No
emphysema.
Pleura: no effusion.
Heart: normal size, no pericardial effusion. Vessels: no coronary calcification.""",
        {
            "atelectasis": 1,
            "pulmonary nodule": 1,
            "emphysema": 0,
            "pleural effusion": 0,
            "cardiomegaly": 0,
            "pericardial effusion": 0,
            "coronary artery wall calcification": 0,
        },
    ),
    (
        "IMPRESSION: Findings concerning for lymphangitic carcinomatosis with nodular interlobular septal thickening. "
        "Mediastinal lymphadenopathy. Right pleural effusion.",
        {"interlobular septal thickening": 1, "lymphadenopathy": 1, "pleural effusion": 1},
    ),
    (
        "The previously noted right pneumothorax has resolved. The chest tube has been removed. Small residual right "
        "pleural effusion.",
        {"pneumothorax": 0, "medical material": 0, "pleural effusion": 1},
    ),
    (
        "Patchy consolidation and ground glass in the right upper lobe, suspicious for pneumonia. Mild emphysema. "
        "Possible small hiatal hernia.",
        {"consolidation": 1, "lung opacity": 1, "emphysema": 1, "hiatal hernia": U},
    ),
    (
        "FINDINGS: There is no consolidation, ground glass opacity or nodule. The airways are normal without "
        "bronchiectasis or bronchial wall thickening. IMPRESSION: Normal CT of the chest.",
        {
            "consolidation": 0,
            "lung opacity": 0,
            "pulmonary nodule": 0,
            "bronchiectasis": 0,
            "peribronchial thickening": 0,
        },
    ),
    (
        "Coronary artery calcifications, extensive. Aortic valve calcification. Heart size is normal. A small "
        "pericardial effusion is questioned.",
        {"coronary artery wall calcification": 1, "cardiomegaly": 0, "pericardial effusion": U},
    ),
    (
        "Fibrotic changes in both lung apices. Nodular pleural thickening on the right. Right pleural effusion has "
        "decreased.",
        {"pulmonary fibrotic sequela": 1, "pleural effusion": 1},
    ),
    (
        "IMPRESSION: Left lower lobe atelectasis, possibly related to mucus plugging. No suspicious pulmonary nodule "
        "or mass.",
        {"atelectasis": 1, "pulmonary nodule": 0},
    ),
    (
        """Lymph nodes: Several prominent but not pathologically enlarged mediastinal lymph nodes.
Lungs: Mild peribronchial thickening, which may reflect bronchitis. No consolidation.""",
        {"lymphadenopathy": 0, "peribronchial thickening": 1, "consolidation": 0},
    ),
    (
        "FINDINGS: The heart is enlarged. There is a large pericardial effusion. Bilateral pleural effusions with "
        "bibasilar atelectasis. Interlobular septal thickening is present. Coronary arterial calcifications. Sternal "
        "wires and a mitral valve prosthesis.",
        {
            "cardiomegaly": 1,
            "pericardial effusion": 1,
            "pleural effusion": 1,
            "atelectasis": 1,
            "interlobular septal thickening": 1,
            "coronary artery wall calcification": 1,
            "medical material": 1,
        },
    ),
    (
        "No emphysema. No bronchiectasis. No mosaic attenuation. No pleural or pericardial effusion. No "
        "lymphadenopathy. No pulmonary nodules.",
        {
            "emphysema": 0,
            "bronchiectasis": 0,
            "mosaic attenuation pattern": 0,
            "pleural effusion": 0,
            "pericardial effusion": 0,
            "lymphadenopathy": 0,
            "pulmonary nodule": 0,
        },
    ),
    (
        """IMPRESSION:
1. Right lower lobe consolidation, improving.
2. Resolving right pleural effusion.
3. Stable mediastinal lymphadenopathy.""",
        {"consolidation": 1, "pleural effusion": 1, "lymphadenopathy": 1},
    ),
    (
        "There is a small sliding hiatal hernia. Esophageal wall thickening. Mild atherosclerosis of the thoracic "
        "aorta without aneurysm.",
        {"hiatal hernia": 1, "arterial wall calcification": 1},
    ),
    (
        "FINDINGS: Interlobular septal thickening and ground-glass opacity, predominantly in the upper lobes. "
        "Scattered areas of air trapping giving a mosaic pattern. Small mediastinal lymph nodes, not enlarged by size "
        "criteria.",
        {
            "interlobular septal thickening": 1,
            "lung opacity": 1,
            "mosaic attenuation pattern": 1,
            "lymphadenopathy": 0,
        },
    ),
    (
        "IMPRESSION: No change in left upper lobe spiculated nodule measuring 9 mm. No new pulmonary nodules. No "
        "pleural effusion.",
        {"pulmonary nodule": 1, "pleural effusion": 0},
    ),
    (
        """Lungs: Clear. No nodules.
Pleura: Small right pleural effusion, cannot exclude empyema.
Mediastinum: Unremarkable.""",
        {"pulmonary nodule": 0, "pleural effusion": 1},
    ),
    (
        "Evaluation for pulmonary nodules is limited by respiratory motion. Dependent atelectasis. No gross "
        "consolidation or effusion.",
        {"pulmonary nodule": U, "atelectasis": 1, "consolidation": 0, "pleural effusion": 0},
    ),
    (
        "IMPRESSION: Bilateral lower lobe bronchiectasis with peribronchial thickening and scattered mucoid impaction. "
        "No emphysema. No lymphadenopathy. Mildly dilated main pulmonary artery.",
        {"bronchiectasis": 1, "peribronchial thickening": 1, "emphysema": 0, "lymphadenopathy": 0},
    ),
    (
        "Trace pericardial fluid. No significant pleural effusion. Mild cardiomegaly is present.",
        {"pericardial effusion": 1, "pleural effusion": 0, "cardiomegaly": 1},
    ),
    (
        "FINDINGS: Extensive ground-glass opacities in both lungs. There is also consolidation in the posterior "
        "segments of the lower lobes. No pleural effusion. No lymphadenopathy. IMPRESSION: Multifocal pneumonia, "
        "COVID-19 pneumonia is in the differential.",
        {"lung opacity": 1, "consolidation": 1, "pleural effusion": 0, "lymphadenopathy": 0},
    ),
    (
        "Postoperative changes of left lower lobectomy. No evidence of recurrent disease. No pneumothorax. Pleural "
        "thickening at the resection site. Coronary stents.",
        {"pneumothorax": 0, "medical material": 1},
    ),
]
