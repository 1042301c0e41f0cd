"""Held-out ECG interpretation statements for measuring the report labeller, with hand labels.

Written for this test before the labeller's rules and never used to tune them; the labelling conventions are those of
``heldout_chest_xray`` (1 present, 0 absent, U hedged with "consider", "possible", "probable", "cannot rule out",
"borderline", "versus"; missing = not mentioned). ECG-specific choices: "prolonged PR interval" is first-degree AV
block; "normal axis" says both axis deviations are absent; "no ST-T changes" says ST elevation, ST depression and T wave
abnormality are absent; "ST-T abnormality" and "T wave flattening/inversion" are T wave abnormalities; an *incomplete*
right bundle branch block is not a right bundle branch block; a "wandering atrial pacemaker" is not a paced rhythm.
"""

from __future__ import annotations

U = "u"  # uncertain

REPORTS: list[tuple[str, dict[str, int | str]]] = [
    (
        "Sinus rhythm. Left axis deviation. Left anterior fascicular block. Abnormal ECG.",
        {"left axis deviation": 1, "left anterior fascicular block": 1},
    ),
    (
        "Atrial fibrillation with rapid ventricular response. Nonspecific ST and T wave abnormality.",
        {"atrial fibrillation": 1, "t wave abnormality": 1},
    ),
    ("Normal sinus rhythm. Normal ECG. No ST elevation.", {"st elevation": 0}),
    (
        "Sinus bradycardia with first degree AV block. Otherwise normal ECG.",
        {"sinus bradycardia": 1, "first degree av block": 1},
    ),
    (
        "Sinus tachycardia. Right bundle branch block. Possible right ventricular hypertrophy.",
        {"sinus tachycardia": 1, "right bundle branch block": 1},
    ),
    (
        "Atrial flutter with 2:1 AV conduction. Low QRS voltage in limb leads.",
        {"atrial flutter": 1, "low qrs voltage": 1},
    ),
    (
        "Sinus rhythm with frequent premature ventricular complexes. Prolonged QT interval.",
        {"premature ventricular complexes": 1, "prolonged qt": 1},
    ),
    ("Ventricular paced rhythm. No further analysis.", {"paced rhythm": 1}),
    (
        "Sinus rhythm. Left ventricular hypertrophy with repolarization abnormality. Left atrial enlargement.",
        {"left ventricular hypertrophy": 1},
    ),
    (
        "Sinus rhythm. Inferior Q waves, consider old inferior infarct. No acute ST changes.",
        {"myocardial infarction": U, "st elevation": 0, "st depression": 0},
    ),
    (
        "Atrial fibrillation with controlled ventricular response. Left bundle branch block.",
        {"atrial fibrillation": 1, "left bundle branch block": 1},
    ),
    (
        "ACUTE MI / STEMI. ST elevation in V1-V4 with reciprocal ST depression in the inferior leads.",
        {"myocardial infarction": 1, "st elevation": 1, "st depression": 1},
    ),
    (
        "Sinus rhythm. Premature atrial complexes. Incomplete right bundle branch block.",
        {"premature atrial complexes": 1},
    ),
    (
        "Normal sinus rhythm. Right axis deviation. Cannot rule out left posterior fascicular block.",
        {"right axis deviation": 1},
    ),
    (
        "Sinus rhythm. Borderline prolonged QT interval. T wave inversion in leads III and aVF.",
        {"prolonged qt": U, "t wave abnormality": 1},
    ),
    (
        "Atrial fibrillation has been replaced by sinus rhythm. First degree AV block persists.",
        {"atrial fibrillation": 0, "first degree av block": 1},
    ),
    (
        "Sinus rhythm with occasional PVCs. Left ventricular hypertrophy by voltage criteria. ST depression in lateral "
        "leads, possibly due to LVH strain pattern.",
        {"premature ventricular complexes": 1, "left ventricular hypertrophy": 1, "st depression": 1},
    ),
    ("Electronic atrial pacing. Left bundle branch block.", {"paced rhythm": 1, "left bundle branch block": 1}),
    (
        "Sinus tachycardia at 118 bpm. Nonspecific T wave flattening. No acute ischemic changes.",
        {"sinus tachycardia": 1, "t wave abnormality": 1},
    ),
    (
        "Marked sinus bradycardia. Junctional escape beats. Normal axis.",
        {"sinus bradycardia": 1, "left axis deviation": 0, "right axis deviation": 0},
    ),
    (
        "Atrial fibrillation versus multifocal atrial tachycardia. Low voltage QRS. Possible anterior infarct, age "
        "undetermined.",
        {"atrial fibrillation": U, "low qrs voltage": 1, "myocardial infarction": U},
    ),
    (
        "Sinus rhythm. Prolonged PR interval. Left axis deviation. Poor R wave progression.",
        {"first degree av block": 1, "left axis deviation": 1},
    ),
    (
        "Sinus rhythm with premature atrial contractions and a run of nonsustained ventricular tachycardia. QTc 520 "
        "ms, prolonged.",
        {"premature atrial complexes": 1, "prolonged qt": 1},
    ),
    (
        "Normal sinus rhythm. No evidence of left ventricular hypertrophy. No bundle branch block.",
        {"left ventricular hypertrophy": 0, "left bundle branch block": 0, "right bundle branch block": 0},
    ),
    (
        "AV sequential paced rhythm. Underlying rhythm is atrial fibrillation.",
        {"paced rhythm": 1, "atrial fibrillation": 1},
    ),
    (
        "Sinus rhythm. ST elevation in leads II, III, aVF. Consider acute inferior myocardial infarction.",
        {"st elevation": 1, "myocardial infarction": U},
    ),
    (
        "Sinus rhythm. Diffuse ST elevation with PR depression, consistent with pericarditis. No reciprocal ST "
        "depression.",
        {"st elevation": 1, "st depression": 0},
    ),
    (
        "Sinus rhythm. Left anterior fascicular block is no longer present. Normal QT.",
        {"left anterior fascicular block": 0, "prolonged qt": 0},
    ),
    (
        "Atrial flutter with variable block. Right bundle branch block. Left anterior fascicular block. Bifascicular "
        "block.",
        {"atrial flutter": 1, "right bundle branch block": 1, "left anterior fascicular block": 1},
    ),
    ("Sinus bradycardia at 48 bpm. Otherwise within normal limits.", {"sinus bradycardia": 1}),
    (
        "Sinus rhythm. Q waves in V1-V3 suggestive of old anteroseptal myocardial infarction. T wave inversions in "
        "V2-V4.",
        {"myocardial infarction": U, "t wave abnormality": 1},
    ),
    (
        "Undetermined rhythm, possibly atrial fibrillation. Frequent ventricular premature beats.",
        {"atrial fibrillation": U, "premature ventricular complexes": 1},
    ),
    (
        "Sinus rhythm with 1st degree A-V block. Right bundle branch block. Inferior infarct, old.",
        {"first degree av block": 1, "right bundle branch block": 1, "myocardial infarction": 1},
    ),
    (
        "Normal ECG. Sinus rhythm at 72 bpm. Normal intervals and axis. No ST-T changes.",
        {
            "left axis deviation": 0,
            "right axis deviation": 0,
            "st elevation": 0,
            "st depression": 0,
            "t wave abnormality": 0,
        },
    ),
    (
        "Atrial fibrillation. Premature ventricular complexes. Left ventricular hypertrophy with secondary ST-T "
        "abnormalities.",
        {
            "atrial fibrillation": 1,
            "premature ventricular complexes": 1,
            "left ventricular hypertrophy": 1,
            "t wave abnormality": 1,
        },
    ),
    (
        "Sinus tachycardia. S1Q3T3 pattern, pulmonary embolism should be considered. Right axis deviation.",
        {"sinus tachycardia": 1, "right axis deviation": 1},
    ),
    (
        "Sinus rhythm. Low voltage in precordial leads, which may be due to body habitus or pericardial effusion.",
        {"low qrs voltage": 1},
    ),
    ("Paced rhythm with 100% ventricular capture. No intrinsic rhythm seen.", {"paced rhythm": 1}),
    (
        "Sinus rhythm. Nonspecific intraventricular conduction delay. Left atrial abnormality. No acute ST elevation.",
        {"st elevation": 0},
    ),
    (
        "Sinus rhythm with marked first-degree atrioventricular block (PR 320 ms). Left bundle branch block, new "
        "compared with prior tracing.",
        {"first degree av block": 1, "left bundle branch block": 1},
    ),
    ("Sinus rhythm with sinus arrhythmia. Early repolarization. No ST depression.", {"st depression": 0}),
    (
        "Atrial fibrillation with slow ventricular response. ST depression and T wave inversion in V5-V6, consider "
        "digoxin effect or ischemia.",
        {"atrial fibrillation": 1, "st depression": 1, "t wave abnormality": 1},
    ),
    ("Sinus rhythm. QT prolongation. Otherwise normal.", {"prolonged qt": 1}),
    (
        "Sinus rhythm. Probable left ventricular hypertrophy. Nonspecific ST abnormality.",
        {"left ventricular hypertrophy": U},
    ),
    (
        "Sinus rhythm. Left axis deviation, consider left anterior fascicular block. Right bundle branch block.",
        {"left axis deviation": 1, "left anterior fascicular block": U, "right bundle branch block": 1},
    ),
    (
        "Ectopic atrial rhythm. Atrial premature complexes, frequent. No atrial fibrillation seen.",
        {"premature atrial complexes": 1, "atrial fibrillation": 0},
    ),
    (
        "Sinus rhythm. Anterolateral ST elevation, evolving anterior infarct. Q waves in V1-V4.",
        {"st elevation": 1, "myocardial infarction": 1},
    ),
    (
        "Sinus rhythm. Right ventricular paced rhythm intermittently. Pacemaker spikes noted.",
        {"paced rhythm": 1},
    ),
    (
        "Atrial fibrillation is no longer present. Sinus rhythm. Left ventricular hypertrophy.",
        {"atrial fibrillation": 0, "left ventricular hypertrophy": 1},
    ),
    (
        "Sinus tachycardia. T wave abnormality, consider anterior ischemia. Prolonged QT.",
        {"sinus tachycardia": 1, "t wave abnormality": 1, "prolonged qt": 1},
    ),
    ("Normal sinus rhythm. Normal ECG. No prior ECG for comparison.", {}),
    (
        "Atrial flutter cannot be excluded. Sinus tachycardia with frequent PACs.",
        {"atrial flutter": U, "sinus tachycardia": 1, "premature atrial complexes": 1},
    ),
    (
        "Sinus rhythm. Left bundle branch block. ST changes are secondary to the conduction abnormality; no evidence "
        "of acute infarction.",
        {"left bundle branch block": 1, "myocardial infarction": 0},
    ),
    (
        "Sinus bradycardia. Borderline low voltage. No significant change from prior.",
        {"sinus bradycardia": 1, "low qrs voltage": U},
    ),
    (
        "Atrial fibrillation with aberrant conduction. Prior inferior myocardial infarction. Frequent PVCs.",
        {"atrial fibrillation": 1, "myocardial infarction": 1, "premature ventricular complexes": 1},
    ),
    (
        "Sinus rhythm. No left axis deviation. No bundle branch block. No hypertrophy.",
        {
            "left axis deviation": 0,
            "left bundle branch block": 0,
            "right bundle branch block": 0,
            "left ventricular hypertrophy": 0,
        },
    ),
    (
        "Sinus rhythm. Right bundle branch block and left anterior fascicular block. First degree AV block. Consider "
        "trifascicular block.",
        {"right bundle branch block": 1, "left anterior fascicular block": 1, "first degree av block": 1},
    ),
    (
        "Wandering atrial pacemaker. Premature ventricular contractions in bigeminy.",
        {"premature ventricular complexes": 1},
    ),
    (
        "Sinus rhythm. Minimal voltage criteria for LVH, may be normal variant. Nonspecific T wave changes.",
        {"left ventricular hypertrophy": U, "t wave abnormality": 1},
    ),
    (
        "Sinus rhythm. Inverted T waves in the inferior leads, new since prior. ST segment depression in V4-V6. Rule "
        "out myocardial ischemia.",
        {"t wave abnormality": 1, "st depression": 1},
    ),
    (
        "Sinus rhythm. QTc normal at 430 ms. No significant ST-T abnormality. Right axis deviation.",
        {
            "prolonged qt": 0,
            "st elevation": 0,
            "st depression": 0,
            "t wave abnormality": 0,
            "right axis deviation": 1,
        },
    ),
    (
        "Atrial fibrillation with rapid ventricular response, rate 140. Left bundle branch block. Cannot exclude acute "
        "myocardial infarction.",
        {"atrial fibrillation": 1, "left bundle branch block": 1, "myocardial infarction": U},
    ),
    (
        "Sinus rhythm. Left ventricular hypertrophy is not evident. Low QRS voltage.",
        {"left ventricular hypertrophy": 0, "low qrs voltage": 1},
    ),
]
